// Package iscsi is sealroot's iSCSI target (RFC 7143): it serves one
// logical unit per target over TCP, with CHAP or mutual CHAP login,
// per-target initiator admission, discovery (SendTargets), R2T and
// immediate data, NOP, task management, logout and CRC32C digests.
// SCSI commands are emulated by package scsi; PDUs are coded by
// package pdu.
//
// # Scope
//
// ErrorRecoveryLevel 0 and MaxConnections 1: any protocol error closes
// the connection (and so the session); the initiator logs in again,
// and a login with the same ISID replaces the old connection. Each
// connection has a reader goroutine and up to 32 command workers; a
// panic in any of them is recovered, logged and closes only that
// connection. Only LUN 0 exists; no persistent reservations.
//
// # Durability
//
// The unit reports a write-back cache (WCE) and DPOFUA: SYNCHRONIZE
// CACHE calls BackingStore.Sync and a FUA write reaches stable storage
// (FUAWriter, or WriteAt then Sync) before its status is sent.
package iscsi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/iscsi/scsi"
)

// BackingStore holds the blocks of a target's logical unit.
type BackingStore = scsi.BackingStore

// Target is one iSCSI target with one logical unit, LUN 0.
type Target struct {
	// IQN is the target name, e.g. "iqn.2026-01.org.sealroot:machine-1".
	IQN string
	// LUN is the logical unit's storage. Required.
	LUN BackingStore
	// Serial is the unit serial number; defaults to IQN.
	Serial string
	// ReadOnly refuses every write with DATA PROTECT and reports the
	// unit write-protected.
	ReadOnly bool
	// Auth, when set, requires CHAP (mutual if Auth.TargetSecret is set).
	Auth *pdu.CHAP
	// AllowInitiator, when set, admits an initiator by address and
	// name; others are refused (status 0x0202) and not listed in
	// discovery. Nil admits everyone.
	AllowInitiator func(remote net.Addr, initiatorName string) bool
	// SessionEnded, when set, is called once a session of the target has
	// ended and is no longer counted (RemoveTargetIfIdle no longer sees
	// it): loggedOut reports whether the initiator logged out (a Logout
	// Request closing the session was answered) rather than the
	// connection dropping, timing out or being closed by the server. It
	// runs on the connection's goroutine and must not block.
	SessionEnded func(loggedOut bool)

	dev      *scsi.Device
	loggedIn bool // an initiator logged in to it; guarded by Server.mu
}

func (t *Target) allows(remote net.Addr, name string) bool {
	return t.AllowInitiator == nil || t.AllowInitiator(remote, name)
}

// Server serves iSCSI targets. The zero value serves no target; add
// them with AddTarget. Methods are safe for concurrent use.
type Server struct {
	// Logger receives connection events; default discards.
	Logger hclog.Logger
	// Rand supplies CHAP challenges; default crypto/rand.
	Rand io.Reader
	// DiscoveryAuth, when set, requires CHAP for discovery sessions.
	DiscoveryAuth *pdu.CHAP
	// PingInterval is how often an idle connection gets a NOP-In ping;
	// zero means 5 seconds, negative disables pings. A connection that
	// on which nothing moves (no byte either way) for three intervals is
	// closed.
	PingInterval time.Duration
	// MaxConns bounds open connections, logged in or not; more are
	// closed on accept. Zero means 256.
	MaxConns int
	// OnCommand, if set, is called after each SCSI command with its
	// class (OpRead, OpWrite, OpSync, OpOther), the data it moved (bytes
	// of Data-In or Data-Out) and how long it ran.
	OnCommand func(op string, bytes int, took time.Duration)

	stats counters // over every connection

	mu      sync.Mutex
	targets map[string]*Target // by IQN
	conns   map[*conn]struct{} // live connections
	tsih    uint16             // last session handle issued
}

// ErrTargetExists is returned by AddTarget for a duplicate IQN.
var ErrTargetExists = errors.New("iscsi: target already exists")

// AddTarget makes t available to new logins.
func (s *Server) AddTarget(t *Target) error {
	if t.IQN == "" || t.LUN == nil {
		return fmt.Errorf("iscsi: AddTarget: IQN and LUN are required")
	}
	serial := t.Serial
	if serial == "" {
		serial = t.IQN
	}
	t.dev = &scsi.Device{Store: t.LUN, Serial: serial, ReadOnly: t.ReadOnly}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.targets[t.IQN]; ok {
		return fmt.Errorf("%w: %s", ErrTargetExists, t.IQN)
	}
	if s.targets == nil {
		s.targets = make(map[string]*Target)
	}
	s.targets[t.IQN] = t
	return nil
}

// RemoveTarget withdraws the target and closes its connections.
func (s *Server) RemoveTarget(iqn string) {
	s.mu.Lock()
	t := s.targets[iqn]
	delete(s.targets, iqn)
	var victims []*conn
	for c := range s.conns {
		if t != nil && c.target == t {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.nc.Close()
	}
}

// RemoveTargetIfIdle withdraws the target unless an initiator is logged
// in to it, atomically with that check: after it returns true no session
// of the target exists and no new one can start. It returns false, and
// changes nothing, while a session is open; true also when there is no
// such target.
func (s *Server) RemoveTargetIfIdle(iqn string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[iqn]
	if t == nil {
		return true
	}
	for c := range s.conns {
		if c.target == t {
			return false
		}
	}
	delete(s.targets, iqn)
	return true
}

// LoggedIn reports whether an initiator has logged in to target iqn
// since it was added (it may have logged out since).
func (s *Server) LoggedIn(iqn string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[iqn]
	return t != nil && t.loggedIn
}

func (s *Server) target(iqn string) *Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targets[iqn]
}

// visibleTargets lists the targets the initiator may log in to.
func (s *Server) visibleTargets(remote net.Addr, name string) []*Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Target
	for _, t := range s.targets {
		if t.allows(remote, name) {
			out = append(out, t)
		}
	}
	return out
}

func (s *Server) newTSIH() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tsih++; s.tsih == 0 {
		s.tsih = 1
	}
	return s.tsih
}

func (s *Server) logger() hclog.Logger {
	if s.Logger == nil {
		return hclog.NewNullLogger()
	}
	return s.Logger
}

func (s *Server) rand() io.Reader {
	if s.Rand == nil {
		return rand.Reader
	}
	return s.Rand
}

// Serve accepts connections on ln until ctx ends or ln fails, then
// closes ln and every connection and waits for their goroutines. It
// returns nil when ctx ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer wg.Wait()
	defer s.closeAll()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("iscsi: accept: %w", err)
		}
		c := newConn(s, nc)
		if !s.track(c) {
			s.logger().Named("iscsi").Warn("too many connections; refused", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		wg.Go(func() {
			c.serve(ctx)
			s.forget(c)
			c.ended()
		})
	}
}

// reinstate records c's target and closes older connections of the
// same initiator session (same target, initiator name and ISID): with
// ErrorRecoveryLevel 0 a new login replaces a session the initiator
// lost (RFC 7143 section 6.3.5, session reinstatement).
func (s *Server) reinstate(c *conn, t *Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.target = t
	if t == nil {
		return
	}
	t.loggedIn = true
	for old := range s.conns {
		if old != c && old.target == t && old.initiator == c.initiator && old.isid == c.isid {
			s.logger().Named("iscsi").Info("session reinstated; closing old connection", "initiator", c.initiator, "target", t.IQN)
			old.nc.Close()
		}
	}
}

// track records a new connection unless MaxConns are open.
func (s *Server) track(c *conn) bool {
	limit := s.MaxConns
	if limit <= 0 {
		limit = 256
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= limit {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
}
