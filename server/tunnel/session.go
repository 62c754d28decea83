package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
)

// Listen listens for TCP on the server's tunnel address only (network
// "tcp" or "tcp4"). Accepted connections are sessions: Remove and Add of
// the peer that opened one close it. With a TUN device the socket is
// created in the calling thread's network namespace, which must be New's.
func (t *Tunnel) Listen(network string, port int) (net.Listener, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("tunnel: listen on %q: only tcp", network)
	}
	ln, err := t.net.listenTCP(netip.AddrPortFrom(t.serverAddr, uint16(port)))
	if err != nil {
		return nil, fmt.Errorf("tunnel: listen on %s:%d: %w", t.serverAddr, port, err)
	}
	return &listener{Listener: ln, t: t}, nil
}

// DialContext opens a TCP connection from the server's tunnel address to
// address (ip:port) through the tunnel.
func (t *Tunnel) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("tunnel: dial %q: only tcp", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %q: %w", address, err)
	}
	c, err := t.net.dialTCP(ctx, t.serverAddr, ap)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %s: %w", address, err)
	}
	return c, nil
}

type listener struct {
	net.Listener
	t *Tunnel
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if s := l.t.track(c); s != nil {
			return s, nil
		}
	}
}

// session is an accepted connection the tunnel can cut.
type session struct {
	net.Conn
	t    *Tunnel
	addr netip.Addr
	// gone is set once the session is out of t.sessions, or being taken
	// out: by its own Close (untrack), or detached by
	// closeSessionsLocked. Neither waits for the other: a sync.Once here
	// deadlocked a storm, closeSessionsLocked holding t.mu while waiting
	// for the Once that a Close held while waiting for t.mu.
	gone atomic.Bool
}

func (s *session) Close() error {
	err := s.Conn.Close()
	if s.gone.CompareAndSwap(false, true) {
		s.t.untrack(s)
	}
	return err
}

// track registers c under its source address; a connection from an
// address with no installed peer (a race with Remove) is closed and nil
// returned.
func (t *Tunnel) track(c net.Conn) *session {
	ip, ok := addrOf(c.RemoteAddr())
	t.mu.Lock()
	defer t.mu.Unlock()
	id, known := t.alloc.byAddr(ip)
	if a, _ := t.alloc.get(id); !ok || !known || a.Key == nil || t.closed {
		c.Close()
		return nil
	}
	s := &session{Conn: c, t: t, addr: ip}
	if t.sessions[ip] == nil {
		t.sessions[ip] = map[*session]struct{}{}
	}
	t.sessions[ip][s] = struct{}{}
	return s
}

func (t *Tunnel) untrack(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.sessions[s.addr], s)
	if len(t.sessions[s.addr]) == 0 {
		delete(t.sessions, s.addr)
	}
}

// closeSessionsLocked closes every session from ip; t.mu is held. The set
// is detached first and each session's untrack disarmed, so no Close
// re-enters t.mu.
func (t *Tunnel) closeSessionsLocked(ip netip.Addr) {
	ss := t.sessions[ip]
	delete(t.sessions, ip)
	for s := range ss {
		s.gone.Store(true) // detached: its Close must not untrack it
		s.Conn.Close()
	}
}
