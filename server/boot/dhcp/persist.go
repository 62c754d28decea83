package dhcp

import (
	"context"
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

// LeaseStore keeps full-mode leases and holds the operator's
// reservations. The server's state store implements it; servers sharing
// one store (etcd) share the leases.
type LeaseStore interface {
	// UpdateLeases calls fn with every stored lease and records the
	// leases fn returns, each replacing its address's record and any
	// other record of its MAC, in the same transaction. The transaction
	// commits only if no lease changed since it was read; otherwise fn
	// runs again on the current leases. An error from fn aborts it and
	// is returned.
	UpdateLeases(ctx context.Context, fn func([]Lease) ([]Lease, error)) error
	// Reservations returns the reservations; read at every DISCOVER and
	// REQUEST, so operator changes take effect at once.
	Reservations(ctx context.Context) ([]Reservation, error)
}

// StoreTimeout bounds one lease decision in the store: a reply later than
// that is useless to a client, which sends its request again.
const StoreTimeout = 2 * time.Second

// load returns the table of the stored leases on addresses keep accepts.
func (p *pool) load(ls []Lease, keep func(netip.Addr) bool) *table {
	t := newTable()
	for _, l := range ls {
		if !keep(l.Addr) {
			continue
		}
		if l.MAC == "" {
			t.byAddr[l.Addr] = &lease{addr: l.Addr, expiry: l.Expiry}
			continue
		}
		t.bind(l.MAC, l.Addr, l.Expiry)
	}
	t.changed = nil
	return t
}

// reservations reads the store's reservations; none without a store.
func (p *pool) reservations(ctx context.Context) ([]Reservation, error) {
	if p.store == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, StoreTimeout)
	defer cancel()
	rs, err := p.store.Reservations(ctx)
	if err != nil {
		p.storeErr(err)
	}
	return rs, err
}

// storeError logs a lease store failure. The request gets no reply (the
// client sends it again): without the store no decision can be checked
// against the other servers' leases.
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
func (s *Server) offer(ctx context.Context, mac string, now time.Time) (netip.Addr, error) {
	for range maxProbes {
		a, fresh, err := s.pool.offer(ctx, mac, now)
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
		if err := s.pool.decline(ctx, mac, a, now); err != nil {
			return netip.Addr{}, err
		}
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
