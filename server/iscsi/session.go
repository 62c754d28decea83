package iscsi

import (
	"context"
	"fmt"
	"time"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// Reject reasons (RFC 7143 section 11.17.1).
const (
	rejectCommandNotSupported = 0x05
	rejectProtocolError       = 0x04
	rejectInvalidPDUField     = 0x09
)

func (c *conn) reject(req *pdu.PDU, reason byte) error {
	p := pdu.New(pdu.OpReject, pdu.FlagFinal)
	p.Header[2] = reason
	p.SetITT(pdu.ReservedTag)
	p.Data = append([]byte(nil), req.Header[:]...)
	return c.send(p, true)
}

func (c *conn) nopOut(req *pdu.PDU) error {
	if req.ITT() == pdu.ReservedTag {
		return nil // answer to our NOP-In, or a ping that wants no reply
	}
	p := pdu.New(pdu.OpNOPIn, pdu.FlagFinal)
	p.SetLUN(req.LUN())
	p.SetITT(req.ITT())
	p.SetU32(pdu.OffTTT, pdu.ReservedTag)
	p.Data = req.Data
	if len(p.Data) > c.wlimits.MaxDataSegmentLength {
		p.Data = p.Data[:c.wlimits.MaxDataSegmentLength]
	}
	return c.send(p, true)
}

// Task management functions and responses (RFC 7143 section 11.5, 11.6).
const (
	tmfAbortTask    = 1
	tmfTaskReassign = 8
	tmfComplete     = 0
	tmfTaskNotFound = 1
	tmfNotSupported = 5
)

func (c *conn) taskMgmt(req *pdu.PDU) error {
	c.inflight.Wait() // running commands complete (and answer) before the TMF response
	resp := byte(tmfComplete)
	switch fn := req.TMFunction(); {
	case fn == tmfAbortTask:
		if _, ok := c.tasks[req.U32(pdu.OffRefTaskTag)]; !ok {
			resp = tmfTaskNotFound // already completed: commands run in order
		}
		c.dropTask(req.U32(pdu.OffRefTaskTag))
	case fn >= 2 && fn <= 7: // ABORT TASK SET .. TARGET COLD RESET
		for itt := range c.tasks { // commands run to completion in order; only pending writes remain
			c.dropTask(itt)
		}
	case fn == tmfTaskReassign:
		resp = tmfNotSupported
	default:
		resp = tmfNotSupported
	}
	c.log.Debug("task management", "function", req.TMFunction(), "response", resp)
	p := pdu.New(pdu.OpTaskMgmtResp, pdu.FlagFinal)
	p.Header[2] = resp
	p.SetITT(req.ITT())
	return c.send(p, true)
}

func (c *conn) logout(req *pdu.PDU) error {
	c.inflight.Wait()
	p := pdu.New(pdu.OpLogoutResp, pdu.FlagFinal)
	p.SetITT(req.ITT())
	reason := req.LogoutReason()
	if reason > 1 {
		p.Header[2] = 2 // connection recovery not supported
	}
	if err := c.send(p, true); err != nil {
		return err
	}
	c.wmu.Lock()
	c.closing = true
	c.loggedOut = reason <= 1 // close the session, or its only connection
	c.wmu.Unlock()
	return nil
}

// text answers a Text Request: SendTargets, everything else NotUnderstood.
func (c *conn) text(req *pdu.PDU) error {
	if req.Continue() {
		return c.reject(req, rejectCommandNotSupported)
	}
	kvs, err := pdu.ParseText(req.Data)
	if err != nil {
		return fmt.Errorf("%w: text request: %w", ErrProtocol, err)
	}
	var out []pdu.KV
	for _, kv := range kvs {
		if kv.Key != "SendTargets" {
			out = append(out, pdu.KV{Key: kv.Key, Value: "NotUnderstood"})
			continue
		}
		out = append(out, c.sendTargets(kv.Value)...)
	}
	p := pdu.New(pdu.OpTextResp, pdu.FlagFinal)
	p.SetITT(req.ITT())
	p.SetU32(pdu.OffTTT, pdu.ReservedTag)
	p.Data = pdu.EncodeText(out)
	for len(p.Data) > c.wlimits.MaxDataSegmentLength && len(out) > 0 {
		out = out[:len(out)-2]
		p.Data = pdu.EncodeText(out)
	}
	return c.send(p, true)
}

func (c *conn) sendTargets(which string) []pdu.KV {
	addr := c.nc.LocalAddr().String() + ",1"
	var out []pdu.KV
	for _, t := range c.srv.visibleTargets(c.nc.RemoteAddr(), c.initiator) {
		if which == "All" && c.discovery || which == t.IQN || which == "" && t == c.target {
			out = append(out, pdu.KV{Key: "TargetName", Value: t.IQN}, pdu.KV{Key: "TargetAddress", Value: addr})
		}
	}
	return out
}

func (c *conn) pingInterval() time.Duration {
	if c.srv.PingInterval == 0 {
		return 5 * time.Second
	}
	return c.srv.PingInterval
}

// idleLimit is how long nothing may move on a connection, either way,
// before it is closed; zero is forever.
func (c *conn) idleLimit() time.Duration {
	if d := c.pingInterval(); d > 0 {
		return 3 * d
	}
	return 0
}

// startPings sends NOP-In pings until the returned stop is called, and
// closes the connection once nothing moved on it for idleLimit: a dead
// initiator neither answers the pings nor takes the data sent to it.
func (c *conn) startPings(ctx context.Context) (stop func()) {
	d := c.pingInterval()
	if d <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(d)
		defer tick.Stop()
		queued := -1
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				// Bytes leaving the send queue are bytes the initiator took.
				if q, ok := sendQueue(c.nc); ok && q != queued {
					if q < queued {
						c.markMoved()
					}
					queued = q
				}
				if still := time.Since(time.Unix(0, c.moved.Load())); still > c.idleLimit() {
					c.log.Info("closing a connection on which nothing moved", "initiator", c.initiator, "for", still.Round(time.Millisecond))
					c.nc.Close()
					return
				}
				if err := c.ping(); err != nil {
					c.nc.Close()
					return
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// ping sends a NOP-In that asks for a reply, unless a response is being
// written (a busy connection needs no ping, and a write blocked on a dead
// initiator must not block the idle check). A ping's own bytes do not
// count as moved: they say nothing of the initiator.
func (c *conn) ping() error {
	if !c.wmu.TryLock() {
		return nil
	}
	defer c.wmu.Unlock()
	p := pdu.New(pdu.OpNOPIn, pdu.FlagFinal)
	p.SetITT(pdu.ReservedTag)
	p.SetU32(pdu.OffTTT, 0x7fff0000) // asks for a NOP-Out reply
	return c.writeLocked(p, false)
}
