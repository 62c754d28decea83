package dhcp

import (
	"fmt"
	"net/netip"
	"time"
)

// Lease is a full-mode lease as a LeaseStore keeps it. MAC "" is an
// address quarantined after a DECLINE or a failed probe.
type Lease struct {
	MAC    string
	Addr   netip.Addr
	Expiry time.Time
}

// Reservation gives a MAC (lower case, colon separated) a fixed address.
type Reservation struct {
	MAC  string
	Addr netip.Addr
}

// LeaseStore keeps full-mode leases across restarts and holds the
// operator's reservations. The server's state store implements it.
type LeaseStore interface {
	// Leases returns every stored lease (read once, at New).
	Leases() ([]Lease, error)
	// PutLease records l, replacing its address's and its MAC's records.
	PutLease(l Lease) error
	// Reservations returns the reservations; read at every DISCOVER and
	// REQUEST, so operator changes take effect at once.
	Reservations() ([]Reservation, error)
}

// load fills the pool from stored leases inside the range.
func (p *pool) load(ls []Lease) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range ls {
		if !p.contains(l.Addr) && !p.outside(l.Addr) {
			continue
		}
		if l.MAC == "" {
			p.byAddr[l.Addr] = &lease{addr: l.Addr, expiry: l.Expiry, stored: l.Expiry}
			continue
		}
		p.bindLocked(l.MAC, l.Addr, l.Expiry).stored = l.Expiry
	}
}

// outside reports whether a is a reserved address outside the range (a
// lease on it is kept like one inside).
func (p *pool) outside(a netip.Addr) bool {
	for _, r := range p.reservations() {
		if r.Addr == a {
			return true
		}
	}
	return false
}

// reservations reads the store's reservations; none without a store or
// when it cannot be read (the error is counted by the caller's log).
func (p *pool) reservations() []Reservation {
	if p.store == nil {
		return nil
	}
	rs, err := p.store.Reservations()
	if err != nil {
		p.storeErr(err)
		return nil
	}
	return rs
}

// persistLocked writes l's record to the store, if any.
func (p *pool) persistLocked(l *lease) {
	if p.store == nil {
		return
	}
	if err := p.store.PutLease(Lease{MAC: l.mac, Addr: l.addr, Expiry: l.expiry}); err != nil {
		p.storeErr(err)
		return
	}
	l.stored = l.expiry
}

// storeError logs a lease store failure. The reply goes on from memory:
// an address is never given out twice while the server runs.
func (s *Server) storeError(err error) {
	s.logger.Error("lease store", "error", err)
}

// maxProbes bounds the addresses probed for one DISCOVER.
const maxProbes = 4

// offer picks mac's address; a fresh one is probed first (Config.Probe)
// and quarantined, like a DECLINE, when something answers for it.
// A DISCOVER sent again while the first one's address is being probed
// gets no answer (the first one's OFFER answers both): it must not be
// offered the address before the probe says it is free.
func (s *Server) offer(mac string, now time.Time) (netip.Addr, error) {
	for range maxProbes {
		a, fresh, err := s.pool.offer(mac, now)
		if err != nil {
			return a, err
		}
		if !fresh || s.cfg.Probe == nil {
			if s.isProbing(a) {
				return netip.Addr{}, fmt.Errorf("%w: %v is being probed for this client", ErrIgnored, a)
			}
			return a, nil
		}
		if !s.probe(a) {
			return a, nil
		}
		s.logger.Warn("address answers a probe: not offered, quarantined", "addr", a)
		s.pool.decline(mac, a, now)
	}
	return netip.Addr{}, ErrPoolExhausted
}

// probe runs Config.Probe on a, marked as being probed meanwhile.
func (s *Server) probe(a netip.Addr) bool {
	s.probeMu.Lock()
	s.probing[a] = true
	s.probeMu.Unlock()
	defer func() {
		s.probeMu.Lock()
		delete(s.probing, a)
		s.probeMu.Unlock()
	}()
	return s.cfg.Probe(a)
}

func (s *Server) isProbing(a netip.Addr) bool {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	return s.probing[a]
}
