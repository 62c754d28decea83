package storm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	agentiscsi "github.com/sealroot/sealroot/agent/iscsi"
	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/wire"
)

// rootReadSize is how many bytes of its root each machine reads after the
// iSCSI login: SEALROOT_STORM_ROOT_READ in MiB, default
// defaultRootReadMiB, what a Debian 12 boot read from its iSCSI root in
// the VM suite: from power-on until systemd had finished booting
// (multi-user.target, "running"), 36.9-37.0 MiB in 546-548 READs on the
// machine's first boot and 37.4-37.6 MiB in 556 on its second, and
// 1.9-2.2 MiB written (two runs, 2026-12-03, Debian 12 minbase with systemd-sysv, udev, iproute2 and
// procps, kernel 6.1; the server's sealroot_iscsi_* metrics, the guest's
// /sys/block/sda/stat agreeing to the request). The command that prints
// the figures ("distro root read: bytes=... reads=..." lines):
//
//	SEALROOT_DISTRO=1 go test -count=1 -timeout 60m -v ./vm-tests -vm -run '^TestDistroRoot$' | grep 'distro root read'
//
// The login's own reads (inquiry, capacity) are a few hundred bytes of
// it. A larger Debian (a desktop) reads more; set the variable. Over an
// NFSv4 root the same boot read 25.8 MiB of file data in 547 READs and
// wrote 8.5 MiB in 582 WRITEs, 4,218 RPCs in all (the client's
// mountstats; vm TestDistroNFSRoot prints "distro nfs root read:").
func rootReadSize() int64 {
	if v, err := strconv.Atoi(os.Getenv("SEALROOT_STORM_ROOT_READ")); err == nil && v >= 0 {
		return int64(v) << 20
	}
	if kind, _ := stormRootKind(); kind == rootKindNFS {
		return defaultNFSRootReadMiB << 20 // in READs of nfsReadChunk
	}
	return defaultRootReadMiB << 20
}

// defaultNFSRootReadMiB is the Debian boot's read measured over an NFSv4
// root (25.8 MiB of file data) rounded up.
const defaultNFSRootReadMiB = 26

// defaultRootReadMiB is the measured Debian boot's read (at most 37.6
// MiB) rounded up.
const defaultRootReadMiB = 38

// rootReadPattern is the sizes of the READs of the measured Debian boot
// (see rootReadSize; the server's sealroot_iscsi_command_bytes histogram
// of the first boot): count READs of at most size bytes, each bucket
// since the previous size. Most READs are single 4 KiB blocks (inodes,
// directories), most bytes come in READs of 512 KiB to 1 MiB
// (readahead of binaries and libraries).
var rootReadPattern = []struct{ size, count int }{
	{4 << 10, 347}, {8 << 10, 18}, {16 << 10, 71}, {32 << 10, 17}, {64 << 10, 19},
	{128 << 10, 22}, {256 << 10, 15}, {512 << 10, 9}, {1 << 20, 28},
}

// rootReadSizes returns the sizes of the READs a machine issues in turn
// (repeated until it has read rootReadSize): SEALROOT_STORM_ROOT_CHUNK
// KiB each when set above 0, else rootReadPattern with each READ at its
// bucket's upper size, in an order shuffled the same way for every
// machine. At the upper sizes one pass of the pattern is 43.3 MiB in 546
// READs, so 38 MiB take about 480 READs (the boot took 546-556). At
// N = 20 the pattern and SEALROOT_STORM_ROOT_CHUNK=512 gave the same wall
// time within the host's noise (three alternating pairs; the read is
// bound by the tunnels), so the pattern costs the storm nothing.
func rootReadSizes() []int {
	if v, err := strconv.Atoi(os.Getenv("SEALROOT_STORM_ROOT_CHUNK")); err == nil && v > 0 {
		return []int{v << 10}
	}
	var sizes []int
	for _, b := range rootReadPattern {
		for range b.count {
			sizes = append(sizes, b.size)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(sizes), func(i, j int) { sizes[i], sizes[j] = sizes[j], sizes[i] })
	return sizes
}

// describeSizes is "512 KiB" for one size, else the measured Debian
// pattern's READ count and mean size.
func describeSizes(sizes []int) string {
	if len(sizes) == 1 {
		return fmt.Sprintf("%d KiB", sizes[0]>>10)
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	return fmt.Sprintf("the measured Debian boot's sizes (%d READs of mean %d KiB per pass)", len(sizes), total/len(sizes)>>10)
}

// iscsiRoot logs in to the machine's own target over conn with the
// payload's CHAP credentials (mutual CHAP) and reads size bytes from the
// start of the LUN in READs of rootReadSizes (scsiReader.readAll).
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
		r := scsiReader{conn: conn, sizes: rootReadSizes(), cmdSN: sess.CmdSN, expStatSN: sess.ExpStatSN,
			lim: pdu.Limits{MaxDataSegmentLength: sess.Params.MaxRecvDataSegmentLength,
				HeaderDigest: sess.Params.HeaderDigest, DataDigest: sess.Params.DataDigest}}
		return r.readAll(size)
	}
	return loginDone, read
}

// scsiReader issues READ(16) commands on a logged-in connection and
// counts the Data-In bytes.
type scsiReader struct {
	conn      net.Conn
	sizes     []int // of the READs, in turn
	itt       uint32
	cmdSN     uint32
	expStatSN uint32
	lim       pdu.Limits
}

// readAll reads size bytes from LBA 0 in commands of r.sizes, in turn,
// with up to rootQueueDepth of them outstanding, as the kernel's sd
// driver keeps several in flight on an iSCSI disk. The target answers
// each in Data-In PDUs of the negotiated segment length.
func (r *scsiReader) readAll(size int64) (int64, error) {
	var sent, got int64
	outstanding, next := 0, 0
	for sent < size || outstanding > 0 {
		for sent < size && outstanding < rootQueueDepth {
			n := min(int64(r.sizes[next%len(r.sizes)]), size-sent)
			next++
			if err := r.send(uint64(sent/512), uint32((n+511)/512)); err != nil {
				return got, err
			}
			sent += n
			outstanding++
		}
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
			if st := p.Header[3]; st != 0 {
				return got, fmt.Errorf("READ(16) status %#x", st)
			}
		case pdu.OpSCSIResponse:
			if st := p.Header[3]; p.Header[2] != 0 || st != 0 {
				return got, fmt.Errorf("READ(16) response %#x status %#x sense % x", p.Header[2], st, p.Data)
			}
		case pdu.OpNOPIn:
			// The target's ping: answer it as Linux's initiator does, or
			// the target drops the connection after three silent intervals.
			if p.TTT() != pdu.ReservedTag {
				if err := r.pong(p); err != nil {
					return got, err
				}
			}
			continue
		default:
			return got, fmt.Errorf("unexpected %s during READ(16)", p.Opcode())
		}
		r.expStatSN = p.U32(pdu.OffStatSN) + 1
		outstanding--
	}
	return got, nil
}

// rootQueueDepth is how many READ(16) commands a machine keeps in flight.
const rootQueueDepth = 4

// pong answers a NOP-In ping with a NOP-Out echoing its target task tag
// (RFC 7143 section 11.18): immediate, no new CmdSN.
func (r *scsiReader) pong(ping *pdu.PDU) error {
	p := pdu.New(pdu.OpNOPOut, pdu.FlagFinal)
	p.SetImmediate(true)
	p.SetLUN(ping.LUN())
	p.SetITT(pdu.ReservedTag)
	p.SetU32(pdu.OffTTT, ping.TTT())
	p.SetU32(pdu.OffCmdSN, r.cmdSN)
	p.SetU32(pdu.OffExpStatSN, r.expStatSN)
	return pdu.Write(r.conn, p, r.lim)
}

func (r *scsiReader) send(lba uint64, blocks uint32) error {
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
	return pdu.Write(r.conn, cmd, r.lim)
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

// Root kinds of the storm's machines (SEALROOT_STORM_ROOT).
const (
	rootKindISCSI = wire.RootISCSI
	rootKindNFS   = wire.RootNFS
)

// stormRootKind is SEALROOT_STORM_ROOT: "iscsi" (default), each machine
// logs in to its own iSCSI target; or "nfs", each machine mounts its own
// NFSv4 export of nfs-ganesha, which the server then manages.
func stormRootKind() (string, error) {
	switch v := os.Getenv("SEALROOT_STORM_ROOT"); v {
	case "", rootKindISCSI:
		return rootKindISCSI, nil
	case rootKindNFS:
		return rootKindNFS, nil
	default:
		return "", fmt.Errorf("SEALROOT_STORM_ROOT %q: want iscsi or nfs", v)
	}
}

// nfsRoot mounts the machine's export through the tunnel with an NFSv4.2
// session (nfsClient: the agent mounts with vers=4.2), opens the root
// image's file and reads size bytes of it, checked against want (the
// file's content); retries counts the compounds sent again, recovered
// the recoveries of state the server lost.
func nfsRoot(ctx context.Context, conn net.Conn, p *wire.Payload, owner string, want []byte, size int64, retries, recovered *int) (mount func() error, read func() (int64, error)) {
	var c *nfsClient
	var fh []byte
	mount = func() error {
		if p.Root.Kind != wire.RootNFS {
			return fmt.Errorf("root plan is %q, want nfs", p.Root.Kind)
		}
		export := strings.Trim(p.Root.Params[wire.NFSPath], "/")
		if export == "" || strings.Contains(export, "/") {
			return fmt.Errorf("root plan path %q: want one export name", p.Root.Params[wire.NFSPath])
		}
		if dl, ok := ctx.Deadline(); ok {
			conn.SetDeadline(dl)
		}
		var err error
		if c, err = nfsMount(conn, owner, uint64(time.Now().UnixNano())); err != nil {
			return fmt.Errorf("nfs mount: %w", err)
		}
		fh, err = c.lookup(export, rootFileName)
		*retries = c.retries
		if err != nil {
			return fmt.Errorf("nfs mount: %w", err)
		}
		return nil
	}
	read = func() (int64, error) {
		stateid, err := c.open(fh)
		*retries = c.retries
		if err != nil {
			return 0, err
		}
		n, stateid, err := c.readAll(fh, stateid, size, func(off int64, data []byte) error {
			if off+int64(len(data)) > int64(len(want)) || !bytes.Equal(data, want[off:off+int64(len(data))]) {
				return fmt.Errorf("READ at %d: %d bytes that are not the file's", off, len(data))
			}
			return nil
		})
		*retries = c.retries
		*recovered = c.recovered
		if err != nil {
			return n, err
		}
		if n != size {
			return n, fmt.Errorf("read %d bytes of %s, want %d", n, rootFileName, size)
		}
		return n, c.close(fh, stateid)
	}
	return mount, read
}

// nfsEndpoint is the plan's NFS server address and port.
func nfsEndpoint(p *wire.RootPlan) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(p.Params[wire.NFSServer])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("root plan server %q: %w", p.Params[wire.NFSServer], err)
	}
	port := uint64(2049)
	if v := p.Params[wire.NFSPort]; v != "" {
		if port, err = strconv.ParseUint(v, 10, 16); err != nil {
			return netip.AddrPort{}, fmt.Errorf("root plan port %q: %w", v, err)
		}
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
