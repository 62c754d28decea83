package iscsi

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/iscsi/scsi"
)

// maxTransfer bounds the Data-Out a command may announce.
const maxTransfer = scsi.MaxTransferBlocks * scsi.BlockSize

// maxPendingBytes bounds the Data-Out buffers one connection may hold
// for writes still waiting for data; beyond it commands get TASK SET
// FULL and the initiator retries.
const maxPendingBytes = 64 << 20

// statusTaskSetFull is the SAM-5 TASK SET FULL status.
const statusTaskSetFull = 0x28

// maxInflight bounds the commands one connection executes at once.
const maxInflight = 32

// taskSimple is the SIMPLE task attribute (RFC 7143 section 11.3.1.1);
// 0 is untagged, 2 ORDERED, 3 HEAD OF QUEUE, 4 ACA.
const taskSimple = 1

// writeTask is a command waiting for its Data-Out.
type writeTask struct {
	cmd      *pdu.PDU
	buf      []byte // EDTL bytes
	received int
	next     int    // next offset to solicit with R2T
	ttt      uint32 // tag of the outstanding R2T, or ReservedTag while unsolicited data flows
	r2tSN    uint32
	dataSN   uint32 // expected DataSN of the next Data-Out in this sequence
	badSN    bool   // a Data-Out arrived out of sequence: fail the command
}

func (c *conn) scsiCommand(req *pdu.PDU) error {
	if c.discovery {
		return c.reject(req, rejectProtocolError)
	}
	edtl := int(req.U32(pdu.OffEDTL))
	write := req.Flags()&pdu.FlagWrite != 0
	if !write {
		if len(req.Data) > 0 {
			return fmt.Errorf("%w: immediate data on a command without W bit", ErrProtocol)
		}
		return c.execute(req, nil)
	}
	if req.Flags()&pdu.FlagRead != 0 || edtl > maxTransfer {
		return c.refuseWrite(req, edtl)
	}
	if len(req.Data) > edtl || len(req.Data) > c.params.firstBurst || (len(req.Data) > 0 && !c.params.immediateData) {
		return fmt.Errorf("%w: %d bytes immediate data, EDTL %d", ErrProtocol, len(req.Data), edtl)
	}
	if _, dup := c.tasks[req.ITT()]; dup {
		return fmt.Errorf("%w: ITT %#x already in use", ErrProtocol, req.ITT())
	}
	if c.pendingBytes+edtl > maxPendingBytes {
		return c.respond(req, scsi.Result{Status: statusTaskSetFull}, edtl)
	}
	t := &writeTask{cmd: req, buf: make([]byte, edtl), ttt: pdu.ReservedTag}
	c.pendingBytes += edtl
	c.tasks[req.ITT()] = t
	t.received = copy(t.buf, req.Data)
	t.next = t.received
	if !req.Final() {
		// Unsolicited Data-Out follows, up to FirstBurstLength.
		t.next = min(c.params.firstBurst, edtl)
		return nil
	}
	return c.advance(req.ITT(), t)
}

// refuseWrite answers a write it will not accept, discarding any
// Data-Out that follows (unknown ITT).
func (c *conn) refuseWrite(req *pdu.PDU, edtl int) error {
	c.log.Debug("write refused", "edtl", edtl, "opcode", req.CDB()[0])
	r := scsi.Result{Status: scsi.StatusCheckCondition, Sense: scsi.Sense(0x05, 0x2400)}
	return c.respond(req, r, edtl)
}

// advance solicits the next burst or, once all data is in, executes.
func (c *conn) advance(itt uint32, t *writeTask) error {
	edtl := len(t.buf)
	if t.next >= edtl {
		if t.received < edtl {
			return nil // unsolicited data still arriving
		}
		c.dropTask(itt)
		if t.badSN { // ABORTED COMMAND, DATA PHASE ERROR; nothing written
			r := scsi.Result{Status: scsi.StatusCheckCondition, Sense: scsi.Sense(0x0b, 0x4b00)}
			return c.respond(t.cmd, r, edtl)
		}
		return c.execute(t.cmd, t.buf)
	}
	n := min(c.params.maxBurst, edtl-t.next)
	c.nextTTT++
	if c.nextTTT == pdu.ReservedTag {
		c.nextTTT = 0
	}
	t.ttt = c.nextTTT
	t.dataSN = 0
	r2t := pdu.New(pdu.OpR2T, pdu.FlagFinal)
	r2t.SetLUN(t.cmd.LUN())
	r2t.SetITT(itt)
	r2t.SetU32(pdu.OffTTT, t.ttt)
	r2t.SetU32(pdu.OffR2TSN, t.r2tSN)
	r2t.SetU32(pdu.OffBufferOffset, uint32(t.next))
	r2t.SetU32(pdu.OffDesiredLen, uint32(n))
	t.r2tSN++
	t.next += n
	return c.send(r2t, false)
}

func (c *conn) dataOut(req *pdu.PDU) error {
	t, ok := c.tasks[req.ITT()]
	if !ok {
		return nil // for a refused or aborted command: discard
	}
	off, n := int(req.U32(pdu.OffBufferOffset)), len(req.Data)
	if req.TTT() != t.ttt || off < 0 || off > len(t.buf) || n > len(t.buf)-off {
		return fmt.Errorf("%w: Data-Out TTT %#x offset %d length %d for EDTL %d", ErrProtocol, req.TTT(), off, n, len(t.buf))
	}
	if sn := req.U32(pdu.OffDataSN); sn != t.dataSN {
		c.log.Warn("Data-Out out of sequence", "datasn", sn, "expected", t.dataSN)
		t.badSN = true
	}
	t.dataSN++
	copy(t.buf[off:], req.Data)
	t.received += n
	if !req.Final() {
		return nil
	}
	if t.received > len(t.buf) {
		return fmt.Errorf("%w: more Data-Out than EDTL %d", ErrProtocol, len(t.buf))
	}
	if t.ttt == pdu.ReservedTag {
		t.next = t.received
	}
	return c.advance(req.ITT(), t)
}

// execute runs a command whose Data-Out is complete and answers it.
//
// SIMPLE (and untagged) commands run concurrently on up to maxInflight
// worker goroutines, so a slow read or fdatasync does not hold up the
// rest of the queue; ORDERED, HEAD OF QUEUE and ACA commands wait for
// everything before them and run alone.
func (c *conn) execute(req *pdu.PDU, out []byte) error {
	if attr := req.Flags() & 7; attr > taskSimple {
		c.inflight.Wait()
		return c.complete(req, out)
	}
	c.slots <- struct{}{}
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		defer func() { <-c.slots }()
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("command panicked; connection closed", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				c.nc.Close()
			}
		}()
		if err := c.complete(req, out); err != nil {
			c.nc.Close() // the reader sees the failure and ends the connection
		}
	}()
	return nil
}

// complete runs a command and sends its Data-In and status.
func (c *conn) complete(req *pdu.PDU, out []byte) error {
	if req.Flags()&pdu.FlagWrite != 0 {
		return c.executeWrite(req, out)
	}
	r := c.run(req, out)
	if r.Status != scsi.StatusGood {
		return c.respond(req, r, int(req.U32(pdu.OffEDTL)))
	}
	return c.dataIn(req, r)
}

func (c *conn) run(req *pdu.PDU, out []byte) scsi.Result {
	if lun := req.LUN() >> 48 & 0x3fff; lun != 0 {
		return otherLUN(req.CDB())
	}
	start := time.Now()
	r := c.device().Execute(req.CDB(), out)
	c.record(req.CDB(), len(out), r, time.Since(start))
	return r
}

// executeWrite runs a command with Data-Out. When the initiator's
// Expected Data Transfer Length differs from what the CDB asks for,
// only the smaller amount is transferred and the residual reported
// (FCP-4 9.4.2 a, as libiscsi's residual tests expect).
func (c *conn) executeWrite(req *pdu.PDU, out []byte) error {
	spdtl, ok := scsi.DataOutLength(req.CDB())
	if !ok {
		spdtl = len(out)
	}
	return c.respond(req, c.run(req, out), spdtl) // handlers read only what their CDB describes
}

// otherLUN answers a command addressed to a LUN that does not exist.
func otherLUN(cdb []byte) scsi.Result {
	switch cdb[0] {
	case 0x12: // INQUIRY: peripheral qualifier 3, no device
		return scsi.Result{Data: []byte{0x7f, 0, 6, 2, 0}}
	case 0xa0:
		return (&scsi.Device{}).Execute(cdb, nil)
	}
	return scsi.Result{Status: scsi.StatusCheckCondition, Sense: scsi.Sense(0x05, 0x2500)}
}

// dropTask forgets a pending write and releases its buffer budget.
func (c *conn) dropTask(itt uint32) {
	if t, ok := c.tasks[itt]; ok {
		c.pendingBytes -= len(t.buf)
		delete(c.tasks, itt)
	}
}
