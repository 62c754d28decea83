package iscsi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/sealroot/sealroot/agent/backoff"
	"github.com/sealroot/sealroot/iscsi/pdu"
)

// KeeperName is the keeper's argv[0]: the leading "@" makes systemd spare
// it at shutdown (systemd's ROOT_STORAGE_DAEMONS convention).
const KeeperName = "@sealroot-iscsi"

// Errors of the keeper; test with errors.Is.
var (
	// ErrConnLost: the kernel reported a connection error while the
	// keeper was logging in again.
	ErrConnLost = errors.New("iscsi: connection lost during re-login")
	// ErrRecoveryTimeout: no re-login succeeded within the session's
	// recovery timeout; the kernel has failed the queued I/O.
	ErrRecoveryTimeout = errors.New("iscsi: re-login did not succeed within the recovery timeout")
)

// kernel is what the keeper needs of NETLINK_ISCSI (*Netlink on Linux).
type kernel interface {
	paramSetter
	stopConn(sid, cid, flag uint32) error
	bindConn(sid, cid uint32, fd int) error
	sendPDU(sid, cid uint32, hdr, data []byte) error
	startConn(sid, cid uint32) error
	// event returns the next RECV_PDU or CONN_ERROR event.
	event(timeout time.Duration) (event, error)
}

// keeper logs in again whenever the kernel reports that the connection
// of a session dropped, keeping the session (and its block device).
type keeper struct {
	Target Target // the attach's target, same ISID and credentials
	SID    uint32
	CID    uint32
	// Dial connects to the portal; default net.Dialer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// MinBackoff and MaxBackoff bound the jittered delays between
	// attempts; defaults 250ms and 5s.
	MinBackoff, MaxBackoff time.Duration

	k kernel
}

// eventPoll is how long one wait for a kernel event lasts before the
// keeper checks ctx again.
const eventPoll = time.Second

// run waits for connection errors of k.SID and recovers from each until
// ctx ends.
func (k *keeper) run(ctx context.Context) error {
	k.Target = k.Target.withDefaults()
	if k.Dial == nil {
		k.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if k.MinBackoff <= 0 {
		k.MinBackoff = 250 * time.Millisecond
	}
	if k.MaxBackoff <= 0 {
		k.MaxBackoff = 5 * time.Second
	}
	log := k.Target.Logger
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e, err := k.k.event(eventPoll)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return err
		}
		if e.typ != kevConnError || e.connError().sid != k.SID {
			continue
		}
		begin := time.Now()
		log.Warn("iSCSI connection dropped; logging in again", "sid", k.SID, "code", e.connError().code)
		if err := k.recover(ctx); err != nil {
			log.Error("iSCSI re-login failed", "sid", k.SID, "error", err)
			continue
		}
		log.Info("iSCSI connection restored", "sid", k.SID, "took", time.Since(begin).Round(time.Millisecond))
	}
}

// recover stops the connection for recovery and logs in again with
// jittered backoff until it works or the recovery timeout passes.
func (k *keeper) recover(ctx context.Context) error {
	t := k.Target
	ctx, cancel := context.WithTimeout(ctx, t.RecoveryTimeout)
	defer cancel()
	if err := k.k.stopConn(k.SID, k.CID, stopConnRecover); err != nil {
		t.Logger.Warn("stop connection for recovery", "sid", k.SID, "error", err)
	}
	b := backoff.New(k.MinBackoff, k.MaxBackoff, nil)
	var last error // the last error that is not the recovery timeout itself
	for attempt := 1; ; attempt++ {
		err := k.relogin(ctx)
		if err == nil {
			return nil
		}
		t.Logger.Warn("iSCSI re-login attempt failed", "sid", k.SID, "attempt", attempt, "error", err)
		if deadline, _ := ctx.Deadline(); last == nil || time.Now().Before(deadline) {
			last = err
		}
		if b.Sleep(ctx) != nil {
			return fmt.Errorf("%w: after %d attempts: %w", ErrRecoveryTimeout, attempt, last)
		}
	}
}

// relogin dials, binds the new socket to the stopped connection, logs in
// through the kernel and starts the connection.
func (k *keeper) relogin(ctx context.Context) error {
	t := k.Target
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := k.Dial(dctx, t.Portal)
	if err != nil {
		return fmt.Errorf("iscsi: connect to %s: %w", t.Portal, err)
	}
	defer c.Close() // the kernel holds its own reference once bound
	if err := bindSocket(k.k, k.SID, k.CID, c); err != nil {
		return err
	}
	sess, err := k.kernelLogin(dctx)
	if err == nil {
		raddr, _ := c.RemoteAddr().(*net.TCPAddr)
		if raddr == nil {
			raddr = &net.TCPAddr{}
		}
		err = setParams(k.k, k.SID, k.CID, sess, t, raddr)
	}
	if err == nil {
		err = k.k.startConn(k.SID, k.CID)
	}
	if err != nil {
		// Unbind (and release) the socket for the next attempt.
		k.k.stopConn(k.SID, k.CID, stopConnRecover)
	}
	return err
}

// kernelLogin logs in on the bound connection through SEND_PDU and
// RECV_PDU, so the kernel stamps the session's CmdSN and learns
// ExpCmdSN/MaxCmdSN from the responses.
func (k *keeper) kernelLogin(ctx context.Context) (*Session, error) {
	cfg := k.Target.Login.withDefaults()
	cfg.CmdSN = 0 // the kernel stamps its own
	if cfg.InitiatorName == "" || cfg.TargetName == "" {
		return nil, fmt.Errorf("iscsi: login: initiator and target names are required")
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultLoginTimeout)
	}
	return login0(&kernelPDUs{k: k.k, sid: k.SID, cid: k.CID, deadline: deadline}, cfg)
}

// bindSocket passes c's socket to the kernel.
func bindSocket(k kernel, sid, cid uint32, c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("iscsi: bind: %T has no socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var berr error
	if err := rc.Control(func(fd uintptr) { berr = k.bindConn(sid, cid, int(fd)) }); err != nil {
		return err
	}
	return berr
}

// kernelPDUs carries login PDUs through the kernel.
type kernelPDUs struct {
	k        kernel
	sid, cid uint32
	deadline time.Time
	itt      uint32 // the ITT of the last request
}

func (p *kernelPDUs) writePDU(req *pdu.PDU) error {
	b, err := req.Encode(nil, pdu.Limits{})
	if err != nil {
		return err
	}
	p.itt = req.ITT()
	return p.k.sendPDU(p.sid, p.cid, b[:pdu.BHSLength], req.Data)
}

// readPDU waits for the response. The kernel sends our requests under
// its own ITT and delivers only the response that matches it, so the
// response is given our ITT back.
func (p *kernelPDUs) readPDU() (*pdu.PDU, error) {
	for {
		left := time.Until(p.deadline)
		if left <= 0 {
			return nil, fmt.Errorf("iscsi: kernel login response: %w", os.ErrDeadlineExceeded)
		}
		e, err := p.k.event(left)
		if err != nil {
			return nil, err
		}
		switch e.typ {
		case kevConnError:
			if ce := e.connError(); ce.sid == p.sid {
				return nil, fmt.Errorf("%w: error %d", ErrConnLost, ce.code)
			}
		case kevRecvPDU:
			sid, cid, resp, err := e.recvPDU()
			if sid != p.sid || cid != p.cid {
				continue
			}
			if err != nil {
				return nil, err
			}
			resp.SetITT(p.itt)
			return resp, nil
		}
	}
}
