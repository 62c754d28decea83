// Package iscsi is the agent's iSCSI initiator: it logs in to a target
// from Go over a TCP connection (CHAP and mutual CHAP, operational
// negotiation for Linux's iscsi_tcp), then hands the logged-in socket to
// the kernel through NETLINK_ISCSI, so the kernel's sd driver serves the
// LUN as a block device.
//
// # Security
//
// With mutual CHAP ([CHAP.TargetSecret] set) Login challenges the target
// with a fresh random challenge and refuses the login ([ErrTargetAuth])
// unless the target answers it with the target secret: this is how the
// agent knows it talks to the real target. A target that tries to skip
// authentication (AuthMethod=None while CHAP is configured) is refused too.
// Responses are compared in constant time; secrets are never logged and
// never given to the kernel.
//
// # Scope
//
// ErrorRecoveryLevel 0, one connection per session, no digests on data
// (header digests optional), one Login PDU per step (no C bit).
//
// # Keeper
//
// After switch_root nothing else logs in again when the TCP connection
// drops: the kernel (ErrorRecoveryLevel 0) sends ISCSI_KEVENT_CONN_ERROR
// to NETLINK_ISCSI group 1, blocks the SCSI host and queues I/O for
// Target.RecoveryTimeout (SESS_RECOVERY_TMO, 120 s), then fails it. The
// kernel's own NOP-Out pings (PING_TMO/RECV_TMO = Target.PingInterval)
// detect a dead target within about two intervals.
//
// [StartKeeper] starts the keeper before switch_root:
// /proc/self/exe with argv[0] [KeeperName] ("@sealroot-iscsi": the
// leading "@" makes systemd spare it at shutdown), its own session, uid
// 0, the target and CHAP credentials passed over a pipe so it needs no
// file of the new root; the executable calls [RunKeeper]. The keeper
// listens on NETLINK_ISCSI group 1 and, on ISCSI_KEVENT_CONN_ERROR of
// its session, with agent/backoff's jittered delays bounded by
// RecoveryTimeout:
//
//  1. STOP_CONN with STOP_CONN_RECOVER (the session and /dev/sdX stay);
//  2. dials the portal and BIND_CONNs the new socket to the same sid/cid;
//  3. logs in again with the same ISID, TSIH 0 (session reinstatement)
//     and the same CHAP credentials, THROUGH THE KERNEL
//     (ISCSI_UEVENT_SEND_PDU and ISCSI_KEVENT_RECV_PDU), not on the raw
//     socket as Attach does: the kernel session's CmdSN has advanced with
//     every command and is not visible to user space; libiscsi stamps the
//     Login PDU's CmdSN (and its own ITT) and takes ExpCmdSN/MaxCmdSN from
//     the Login Response only on that path (as open-iscsi's iscsid does);
//  4. SET_PARAM (EXP_STATSN and the negotiated values) and START_CONN:
//     the kernel unblocks the host and retries the queued commands.
//
// A failed attempt is undone with another STOP_CONN_RECOVER, which
// releases the bound socket.
package iscsi

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// Defaults of the operational values the initiator offers.
const (
	DefaultMaxRecvDataSegmentLength = 256 << 10
	DefaultMaxBurstLength           = 1 << 20
	DefaultFirstBurstLength         = 256 << 10
	// DefaultLoginTimeout bounds a login when ctx has no deadline.
	DefaultLoginTimeout = 30 * time.Second
)

// maxLoginRounds bounds the exchanges of one login stage.
const maxLoginRounds = 8

// Config describes one login.
type Config struct {
	InitiatorName string // required
	TargetName    string // required
	// ISID identifies the session on the initiator side. Logging in again
	// after a connection drop must reuse it (session reinstatement).
	ISID [6]byte
	// CmdSN is the command sequence number of the login; the kernel's
	// first command carries it. Default 0.
	CmdSN uint32
	// CHAP, when set, is required; nil logs in with AuthMethod=None.
	CHAP *pdu.CHAP
	// HeaderDigest offers CRC32C header digests (with None as fallback).
	HeaderDigest bool
	// MaxRecvDataSegmentLength, MaxBurstLength and FirstBurstLength are
	// offered; zero means the Default values.
	MaxRecvDataSegmentLength, MaxBurstLength, FirstBurstLength int
	// Rand supplies mutual CHAP challenges; default crypto/rand.
	Rand io.Reader
}

func (c Config) withDefaults() Config {
	if c.MaxRecvDataSegmentLength == 0 {
		c.MaxRecvDataSegmentLength = DefaultMaxRecvDataSegmentLength
	}
	if c.MaxBurstLength == 0 {
		c.MaxBurstLength = DefaultMaxBurstLength
	}
	if c.FirstBurstLength == 0 {
		c.FirstBurstLength = min(DefaultFirstBurstLength, c.MaxBurstLength)
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return c
}

// Session is the outcome of a successful login: what the kernel needs to
// take the connection over.
type Session struct {
	Params    Params
	ISID      [6]byte
	TSIH      uint16
	CmdSN     uint32 // the first command's CmdSN
	ExpStatSN uint32 // StatSN of the last Login Response + 1
}

// Login runs the login phase on conn and leaves it in full feature
// phase. It does not close conn. ctx bounds the whole exchange (default
// DefaultLoginTimeout).
func Login(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
	if cfg.InitiatorName == "" || cfg.TargetName == "" {
		return nil, fmt.Errorf("iscsi: login: initiator and target names are required")
	}
	cfg = cfg.withDefaults()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultLoginTimeout)
	}
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	return login0(&netPDUs{conn}, cfg)
}

// login0 runs the login phase over pc.
func login0(pc pduConn, cfg Config) (*Session, error) {
	l := &login{cfg: cfg, conn: pc, params: defaultParams(cfg)}
	if err := l.security(); err != nil {
		return nil, err
	}
	if err := l.operational(); err != nil {
		return nil, err
	}
	if err := l.params.check(); err != nil {
		return nil, err
	}
	return &Session{Params: l.params, ISID: cfg.ISID, TSIH: l.tsih, CmdSN: cfg.CmdSN, ExpStatSN: l.expStatSN}, nil
}

// login is the state of one Login.
type login struct {
	cfg       Config
	conn      pduConn
	params    Params
	stage     int
	expStatSN uint32
	tsih      uint16
	itt       uint32
}

// pduConn carries login PDUs: the raw socket before the kernel has the
// connection, or the kernel's SEND_PDU/RECV_PDU path after.
type pduConn interface {
	writePDU(p *pdu.PDU) error
	readPDU() (*pdu.PDU, error)
}

// netPDUs carries PDUs on a socket.
type netPDUs struct{ c net.Conn }

func (n *netPDUs) writePDU(p *pdu.PDU) error  { return pdu.Write(n.c, p, pdu.Limits{}) }
func (n *netPDUs) readPDU() (*pdu.PDU, error) { return pdu.Read(n.c, pdu.Limits{}) }

// exchange sends one Login Request of the current stage and returns the
// response's keys and whether the target moved to nsg.
func (l *login) exchange(kvs []pdu.KV, transit bool, nsg int) ([]pdu.KV, bool, error) {
	req := pdu.New(pdu.OpLoginReq, 0)
	req.SetImmediate(true)
	f := byte(l.stage&3) << 2
	if transit {
		f |= pdu.FlagTransit | byte(nsg&3)
	}
	req.SetFlags(f)
	copy(req.Header[8:14], l.cfg.ISID[:])
	req.SetTSIH(l.tsih)
	req.SetITT(l.itt)
	req.SetU32(pdu.OffCmdSN, l.cfg.CmdSN)
	req.SetU32(pdu.OffExpStatSN, l.expStatSN)
	req.Data = pdu.EncodeText(kvs)
	if err := l.conn.writePDU(req); err != nil {
		return nil, false, fmt.Errorf("iscsi: send login request: %w", err)
	}
	resp, err := l.conn.readPDU()
	if err != nil {
		return nil, false, fmt.Errorf("iscsi: read login response: %w", err)
	}
	return l.response(resp, transit, nsg)
}

func (l *login) response(resp *pdu.PDU, transit bool, nsg int) ([]pdu.KV, bool, error) {
	if resp.Opcode() != pdu.OpLoginResp {
		return nil, false, fmt.Errorf("%w: %s during login", ErrLoginProtocol, resp.Opcode())
	}
	if class, detail := resp.LoginStatus(); class != 0 {
		return nil, false, &StatusError{Class: class, Detail: detail}
	}
	if resp.ITT() != l.itt {
		return nil, false, fmt.Errorf("%w: response ITT %#x, want %#x", ErrLoginProtocol, resp.ITT(), l.itt)
	}
	if resp.Continue() {
		return nil, false, fmt.Errorf("%w: multi-PDU login text not supported", ErrLoginProtocol)
	}
	if resp.LoginCSG() != l.stage {
		return nil, false, fmt.Errorf("%w: response stage %d, want %d", ErrLoginProtocol, resp.LoginCSG(), l.stage)
	}
	l.expStatSN = resp.U32(pdu.OffStatSN) + 1
	kvs, err := pdu.ParseText(resp.Data)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrLoginProtocol, err)
	}
	if tpgt, ok := pdu.Lookup(kvs, "TargetPortalGroupTag"); ok {
		n, err := strconv.Atoi(tpgt)
		if err != nil || n < 0 || n > 65535 {
			return nil, false, fmt.Errorf("%w: TargetPortalGroupTag=%q", ErrLoginProtocol, tpgt)
		}
		l.params.TPGT = n
	}
	moved := transit && resp.Transit()
	if moved {
		if resp.LoginNSG() != nsg {
			return nil, false, fmt.Errorf("%w: target moved to stage %d, asked for %d", ErrLoginProtocol, resp.LoginNSG(), nsg)
		}
		l.stage = nsg
		if nsg == pdu.StageFullFeature {
			l.tsih = resp.TSIH()
		}
	}
	return kvs, moved, nil
}

// operational negotiates the operational keys and enters full feature
// phase.
func (l *login) operational() error {
	kvs := offer(l.cfg)
	for range maxLoginRounds {
		got, moved, err := l.exchange(kvs, true, pdu.StageFullFeature)
		if err != nil {
			return err
		}
		if err := l.params.apply(got, l.cfg); err != nil {
			return err
		}
		if moved {
			if l.tsih == 0 {
				return fmt.Errorf("%w: full feature phase without a TSIH", ErrLoginProtocol)
			}
			return nil
		}
		kvs = nil
	}
	return fmt.Errorf("%w: target did not enter full feature phase", ErrLoginProtocol)
}
