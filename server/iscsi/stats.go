package iscsi

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/sealroot/sealroot/server/iscsi/scsi"
)

// Operation classes of SCSI commands, for statistics.
const (
	OpRead  = "read"
	OpWrite = "write"
	OpSync  = "sync"
	OpOther = "other"
)

// opClass classifies a CDB by its operation code.
func opClass(cdb []byte) string {
	if len(cdb) == 0 {
		return OpOther
	}
	switch cdb[0] {
	case 0x08, 0x28, 0x88, 0xa8: // READ (6, 10, 16, 12)
		return OpRead
	case 0x0a, 0x2a, 0x8a, 0xaa, 0x2e, 0x8e: // WRITE (6, 10, 16, 12), WRITE AND VERIFY
		return OpWrite
	case 0x35, 0x91: // SYNCHRONIZE CACHE (10, 16)
		return OpSync
	}
	return OpOther
}

// counters are I/O counts; the zero value is ready.
type counters struct {
	read, written, commands, errors atomic.Uint64
}

// add counts one command: in bytes of Data-Out received, out bytes of
// Data-In produced.
func (c *counters) add(in, out int, failed bool) {
	c.commands.Add(1)
	if failed {
		c.errors.Add(1)
	}
	c.read.Add(uint64(out))
	c.written.Add(uint64(in))
}

// Totals are a server's counts since it started, over every session.
type Totals struct {
	Sessions     int    // logged in now (discovery sessions not counted)
	ReadBytes    uint64 // Data-In: data read by initiators (blocks, inquiry and capacity data)
	WrittenBytes uint64 // Data-Out: data written by initiators
	Commands     uint64
	Errors       uint64 // commands that ended with a status other than GOOD
}

// SessionInfo is one logged-in session (discovery sessions are left out).
type SessionInfo struct {
	Initiator    string
	Target       string
	Remote       net.Addr
	Since        time.Time
	ReadBytes    uint64
	WrittenBytes uint64
	Commands     uint64
	Errors       uint64
}

// Sessions returns the logged-in sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SessionInfo
	for c := range s.conns {
		if c.target == nil { // logging in, or discovery; initiator is written before target
			continue
		}
		out = append(out, SessionInfo{
			Initiator: c.initiator, Target: c.target.IQN, Remote: c.nc.RemoteAddr(), Since: c.since,
			ReadBytes: c.stats.read.Load(), WrittenBytes: c.stats.written.Load(),
			Commands: c.stats.commands.Load(), Errors: c.stats.errors.Load(),
		})
	}
	return out
}

// Totals returns the server's counts.
func (s *Server) Totals() Totals {
	t := Totals{ReadBytes: s.stats.read.Load(), WrittenBytes: s.stats.written.Load(),
		Commands: s.stats.commands.Load(), Errors: s.stats.errors.Load()}
	s.mu.Lock()
	for c := range s.conns {
		if c.target != nil {
			t.Sessions++
		}
	}
	s.mu.Unlock()
	return t
}

// record counts one command of c: in bytes received (writes), the bytes
// it sent (reads), and its size and latency for Server.OnCommand.
func (c *conn) record(cdb []byte, in int, r scsi.Result, took time.Duration) {
	op := opClass(cdb)
	failed := r.Status != scsi.StatusGood
	c.stats.add(in, len(r.Data), failed)
	c.srv.stats.add(in, len(r.Data), failed)
	if f := c.srv.OnCommand; f != nil {
		f(op, in+len(r.Data), took)
	}
}
