package iscsi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/iscsi/scsi"
)

// conn is one iSCSI connection, which is also its session
// (MaxConnections=1). The reader goroutine owns every field except
// those under wmu.
type conn struct {
	srv *Server
	nc  net.Conn
	log hclog.Logger
	br  *bufio.Reader

	target    *Target // set under srv.mu once logged in; nil for discovery
	discovery bool
	initiator string
	isid      [6]byte
	params    params
	rlimits   pdu.Limits
	tasks     map[uint32]*writeTask // writes waiting for Data-Out, by ITT
	// pendingBytes is the sum of the pending tasks' buffers.
	pendingBytes int
	// inflight counts commands executing on worker goroutines; slots
	// bounds them.
	inflight sync.WaitGroup
	slots    chan struct{}
	nextTTT  uint32

	// wmu guards the writer and the sequence numbers responses carry.
	wmu      sync.Mutex
	bw       *bufio.Writer
	wlimits  pdu.Limits
	statSN   uint32
	expCmdSN uint32
	closing  bool // a Logout was answered
	// loggedOut: the answered Logout closed the session (reason 0 or 1).
	loggedOut bool

	since time.Time // accepted
	stats counters
	// moved is when bytes last moved on the socket, either way (Unix
	// nanoseconds): a connection is idle only when nothing moved, so an
	// initiator still receiving a long read is not taken for dead while
	// its ping replies queue behind the data.
	moved atomic.Int64
}

// markMoved records that bytes moved on c.
func (c *conn) markMoved() { c.moved.Store(time.Now().UnixNano()) }

// readMarker marks c moved when a read returns bytes from the initiator.
type readMarker struct {
	net.Conn
	c *conn
}

func (r readMarker) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if n > 0 {
		r.c.markMoved()
	}
	return n, err
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv: s, nc: nc, log: s.logger().Named("iscsi").With("remote", nc.RemoteAddr().String()),
		tasks: make(map[uint32]*writeTask), slots: make(chan struct{}, maxInflight),
		since: time.Now(),
	}
	c.moved.Store(c.since.UnixNano())
	c.br = bufio.NewReaderSize(readMarker{nc, c}, 64<<10)
	c.bw = bufio.NewWriterSize(nc, 64<<10)
	return c
}

// serve runs login then full feature phase until the connection ends.
func (c *conn) serve(ctx context.Context) {
	defer func() {
		c.nc.Close() // fails the sends of commands still running
		c.inflight.Wait()
	}()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("connection panicked; closed", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	if err := c.login(); err != nil {
		c.log.Info("login failed", "initiator", c.initiator, "error", err)
		return
	}
	c.log.Info("logged in", "initiator", c.initiator, "target", c.targetName(), "header_digest", c.params.headerDigest, "data_digest", c.params.dataDigest)
	stopPing := c.startPings(ctx)
	defer stopPing()
	err := c.fullFeature()
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		c.log.Info("connection closed", "initiator", c.initiator)
	default:
		c.log.Warn("connection dropped", "initiator", c.initiator, "error", err)
	}
}

func (c *conn) targetName() string {
	if c.target == nil {
		return ""
	}
	return c.target.IQN
}

func (c *conn) login() error {
	l := newLogin(c.srv, c.nc.RemoteAddr(), c.srv.rand())
	c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.nc.SetDeadline(time.Time{})
	for {
		req, err := pdu.Read(c.br, pdu.Limits{})
		if err != nil {
			return fmt.Errorf("iscsi: read login: %w", err)
		}
		resp, done, lerr := l.step(req)
		c.initiator = l.initiatorName
		if done && lerr == nil {
			// The session exists before the initiator learns it does:
			// RemoveTargetIfIdle and Sessions see it from then on.
			c.enter(l, req)
		}
		if err := pdu.Write(c.nc, resp, pdu.Limits{}); err != nil {
			return fmt.Errorf("iscsi: write login response: %w", err)
		}
		if lerr != nil {
			return lerr
		}
		if done {
			return nil
		}
	}
}

// enter switches to full feature phase with the negotiated parameters.
func (c *conn) enter(l *login, req *pdu.PDU) {
	c.params, c.discovery = l.params, l.discovery
	c.statSN, c.expCmdSN = l.statSN, req.CmdSN()
	c.rlimits = pdu.Limits{MaxDataSegmentLength: targetMaxRecvDataSegment,
		HeaderDigest: l.params.headerDigest, DataDigest: l.params.dataDigest}
	c.wlimits = pdu.Limits{MaxDataSegmentLength: l.params.initiatorMaxRecv,
		HeaderDigest: l.params.headerDigest, DataDigest: l.params.dataDigest}
	c.isid = req.ISID()
	c.srv.reinstate(c, l.target)
}

// fullFeature reads and dispatches PDUs until an error or logout.
func (c *conn) fullFeature() error {
	for {
		req, err := pdu.Read(c.br, c.rlimits)
		if err != nil {
			return err
		}
		if err := c.dispatch(req); err != nil {
			return err
		}
		if c.isClosing() {
			return nil
		}
	}
}

func (c *conn) dispatch(req *pdu.PDU) error {
	if err := c.acceptCmdSN(req); err != nil {
		return err
	}
	switch req.Opcode() {
	case pdu.OpNOPOut:
		return c.nopOut(req)
	case pdu.OpSCSICommand:
		return c.scsiCommand(req)
	case pdu.OpDataOut:
		return c.dataOut(req)
	case pdu.OpTaskMgmtReq:
		return c.taskMgmt(req)
	case pdu.OpTextReq:
		return c.text(req)
	case pdu.OpLogoutReq:
		return c.logout(req)
	}
	return c.reject(req, rejectCommandNotSupported)
}

// acceptCmdSN advances ExpCmdSN for non-immediate commands
// (RFC 7143 section 4.2.2.1). Data-Out carries no CmdSN.
func (c *conn) acceptCmdSN(req *pdu.PDU) error {
	switch req.Opcode() {
	case pdu.OpNOPOut, pdu.OpSCSICommand, pdu.OpTaskMgmtReq, pdu.OpTextReq, pdu.OpLogoutReq:
	default:
		return nil // no CmdSN: Data-Out, or an opcode dispatch rejects
	}
	if req.Immediate() {
		return nil
	}
	if req.Opcode() == pdu.OpNOPOut && req.ITT() == pdu.ReservedTag {
		return nil // a ping reply
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	sn := req.CmdSN()
	if d := int32(sn - c.expCmdSN); d < 0 || d >= cmdWindow {
		return fmt.Errorf("%w: CmdSN %d outside window from %d", ErrProtocol, sn, c.expCmdSN)
	}
	if sn == c.expCmdSN {
		c.expCmdSN++
	}
	return nil
}

// send writes a target PDU with current sequence numbers and flushes;
// status responses consume a StatSN. A written PDU counts as moved: a
// full socket (an initiator not taking data) blocks the write instead.
func (c *conn) send(p *pdu.PDU, consumesStatSN bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeLocked(p, consumesStatSN); err != nil {
		return err
	}
	c.markMoved()
	return nil
}

// writeLocked writes p and flushes; c.wmu is held.
func (c *conn) writeLocked(p *pdu.PDU, consumesStatSN bool) error {
	p.SetSN(c.statSN, c.expCmdSN, c.expCmdSN+cmdWindow-1)
	if consumesStatSN {
		c.statSN++
	}
	if err := pdu.Write(c.bw, p, c.wlimits); err != nil {
		return err
	}
	return c.bw.Flush()
}

// sendData writes a Data-In PDU that carries no status; the status
// PDU that follows flushes it.
func (c *conn) sendData(p *pdu.PDU) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	p.SetU32(pdu.OffExpCmdSN, c.expCmdSN)
	p.SetU32(pdu.OffMaxCmdSN, c.expCmdSN+cmdWindow-1)
	if err := pdu.Write(c.bw, p, c.wlimits); err != nil {
		return err
	}
	c.markMoved()
	return nil
}

func (c *conn) isClosing() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closing
}

func (c *conn) device() *scsi.Device { return c.target.dev }

// ended tells the target's SessionEnded hook that c's session is over;
// nothing for a discovery session or a failed login.
func (c *conn) ended() {
	t := c.target // written by this connection's goroutine, which has ended
	if t == nil || t.SessionEnded == nil {
		return
	}
	c.wmu.Lock()
	loggedOut := c.loggedOut
	c.wmu.Unlock()
	t.SessionEnded(loggedOut)
}
