package tunnel

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// A session closing itself (waiting for t.mu to untrack) while a peer
// install replaces the machine's key and closes its sessions (holding
// t.mu) must not deadlock. With a sync.Once guarding untrack it did: the
// second N=1000 storm, every machine rebooting, stopped with every
// exchange slot held by an Add waiting for t.mu.
func TestSessionCloseRacingCloseSessions(t *testing.T) {
	ip := netip.MustParseAddr("10.79.0.2")
	tun := &Tunnel{sessions: map[netip.Addr]map[*session]struct{}{}}
	c, peer := net.Pipe()
	defer peer.Close()
	s := &session{Conn: c, t: tun, addr: ip}
	tun.sessions[ip] = map[*session]struct{}{s: {}}

	tun.mu.Lock() // as addLocked holds it
	closed := make(chan struct{})
	go func() {
		s.Close() // the machine's connection ends: untrack waits for t.mu
		close(closed)
	}()
	time.Sleep(100 * time.Millisecond) // let Close reach untrack
	detached := make(chan struct{})
	go func() {
		tun.closeSessionsLocked(ip) // still under the t.mu taken above
		close(detached)
	}()
	select {
	case <-detached:
	case <-time.After(5 * time.Second):
		t.Errorf("closeSessionsLocked under t.mu blocked behind a session's own Close: deadlock")
	}
	tun.mu.Unlock()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("session Close never returned")
	}
	<-detached
	if len(tun.sessions) != 0 {
		t.Errorf("sessions = %v, want none", tun.sessions)
	}
}
