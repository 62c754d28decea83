package storm

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	agentiscsi "github.com/sealroot/sealroot/agent/iscsi"
	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/wire"
)

// rootReadSize is how many bytes of its root each machine reads after the
// iSCSI login: SEALROOT_STORM_ROOT_READ in MiB, default
// defaultRootReadMiB. The default is NOT a measurement of a Debian boot
// (the VM suite's Debian root test, TestDistroRoot, needs a Debian mirror
// to debootstrap, which this host does not reach): it is the size of
// the storm's kernel plus initramfs again, a floor for what systemd,
// its libraries and units read; set the variable to a measured figure.
func rootReadSize() int64 {
	if v, err := strconv.Atoi(os.Getenv("SEALROOT_STORM_ROOT_READ")); err == nil && v >= 0 {
		return int64(v) << 20
	}
	return defaultRootReadMiB << 20
}

const defaultRootReadMiB = 14

// rootReadChunk is the size of one READ(16), a large readahead (the
// target answers in Data-In PDUs of the negotiated segment length).
const rootReadChunk = 512 << 10

// iscsiRoot logs in to the machine's own target over conn with the
// payload's CHAP credentials (mutual CHAP) and reads size bytes from the
// start of the LUN in rootReadChunk commands, one at a time.
func iscsiRoot(ctx context.Context, conn net.Conn, p *wire.Payload, isid [6]byte, size int64) (loginDone func() error, read func() (int64, error)) {
	var sess *agentiscsi.Session
	loginDone = func() error {
		if p.Root.Kind != wire.RootISCSI {
			return fmt.Errorf("root plan is %q, want iscsi", p.Root.Kind)
		}
		var err error
		sess, err = agentiscsi.Login(ctx, conn, agentiscsi.Config{
			InitiatorName: p.Root.Params[wire.ISCSIInitiator], TargetName: p.Root.Params[wire.ISCSITarget],
			ISID: isid,
			CHAP: &pdu.CHAP{User: string(p.Secrets[wire.SecretCHAPUser]), Secret: string(p.Secrets[wire.SecretCHAPSecret]),
				TargetUser: string(p.Secrets[wire.SecretCHAPTargetUser]), TargetSecret: string(p.Secrets[wire.SecretCHAPTargetSecret])},
		})
		if err != nil {
			return fmt.Errorf("iscsi login: %w", err)
		}
		return nil
	}
	read = func() (int64, error) {
		if dl, ok := ctx.Deadline(); ok {
			conn.SetDeadline(dl)
		}
		r := scsiReader{conn: conn, cmdSN: sess.CmdSN, expStatSN: sess.ExpStatSN,
			lim: pdu.Limits{MaxDataSegmentLength: sess.Params.MaxRecvDataSegmentLength,
				HeaderDigest: sess.Params.HeaderDigest, DataDigest: sess.Params.DataDigest}}
		var got int64
		for got < size {
			n := min(int64(rootReadChunk), size-got)
			m, err := r.read(uint64(got/512), uint32((n+511)/512))
			got += m
			if err != nil {
				return got, fmt.Errorf("read at %d: %w", got, err)
			}
		}
		return got, nil
	}
	return loginDone, read
}

// scsiReader issues READ(16) commands on a logged-in connection and
// counts the Data-In bytes.
type scsiReader struct {
	conn      net.Conn
	itt       uint32
	cmdSN     uint32
	expStatSN uint32
	lim       pdu.Limits
}

func (r *scsiReader) read(lba uint64, blocks uint32) (int64, error) {
	r.itt++
	cmd := pdu.New(pdu.OpSCSICommand, pdu.FlagFinal|pdu.FlagRead)
	cmd.SetITT(r.itt)
	cmd.SetU32(pdu.OffEDTL, blocks*512)
	cmd.SetU32(pdu.OffCmdSN, r.cmdSN)
	cmd.SetU32(pdu.OffExpStatSN, r.expStatSN)
	r.cmdSN++
	cdb := cmd.CDB()
	cdb[0] = 0x88 // READ(16)
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], blocks)
	if err := pdu.Write(r.conn, cmd, r.lim); err != nil {
		return 0, err
	}
	var got int64
	for {
		p, err := pdu.Read(r.conn, r.lim)
		if err != nil {
			return got, err
		}
		switch p.Opcode() {
		case pdu.OpDataIn:
			got += int64(len(p.Data))
			if p.Flags()&pdu.FlagStatus == 0 {
				continue
			}
			r.expStatSN = p.U32(pdu.OffStatSN) + 1
			if st := p.Header[3]; st != 0 {
				return got, fmt.Errorf("READ(16) status %#x", st)
			}
			return got, nil
		case pdu.OpSCSIResponse:
			r.expStatSN = p.U32(pdu.OffStatSN) + 1
			if st := p.Header[3]; p.Header[2] != 0 || st != 0 {
				return got, fmt.Errorf("READ(16) response %#x status %#x sense % x", p.Header[2], st, p.Data)
			}
			return got, nil
		case pdu.OpNOPIn:
			continue // the target's ping; the storm's reads are short
		default:
			return got, fmt.Errorf("unexpected %s during READ(16)", p.Opcode())
		}
	}
}

// tunnelAddrs parses the plan's addresses: the machine's and the server's.
func tunnelAddrs(t *wire.TunnelPlan) (local, server netip.Addr, err error) {
	if t == nil {
		return local, server, fmt.Errorf("payload without a tunnel plan")
	}
	pfx, err := netip.ParsePrefix(t.Address)
	if err != nil {
		return local, server, fmt.Errorf("tunnel address %q: %w", t.Address, err)
	}
	if server, err = netip.ParseAddr(t.ServerAddr); err != nil {
		return local, server, fmt.Errorf("tunnel server address %q: %w", t.ServerAddr, err)
	}
	return pfx.Addr(), server, nil
}
