package dhcp

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"
)

// ErrPoolExhausted means every address is leased or held by an offer.
var ErrPoolExhausted = errors.New("dhcp: address pool exhausted")

// lease binds an address to a client. Records outlive their expiry so that
// a machine gets the same address back (stable per MAC) until another
// client needs it.
type lease struct {
	mac    string // "" for a declined (quarantined) address
	addr   netip.Addr
	expiry time.Time
}

// pool hands out the addresses of the range. Every decision (an offer, an
// ACK, a release, a decline) is taken on a lease table and changes it:
// without a store the table is in memory (one server); with one, each
// decision runs inside LeaseStore.UpdateLeases on the stored table and
// commits only if no lease changed meanwhile, so servers sharing the store
// never give one address to two MACs, nor two addresses to one MAC.
type pool struct {
	first     uint32 // first address of the range
	size      uint32
	leaseTime time.Duration

	// store, when not nil, holds the leases (see LeaseStore) and the
	// reservations.
	store    LeaseStore
	storeErr func(error)

	mu  sync.Mutex
	mem *table // guarded by mu; the leases when store is nil
}

// table is a lease table: at most one record per address and one per MAC.
// changed collects the records a decision wrote, for the store.
type table struct {
	byMAC   map[string]*lease
	byAddr  map[netip.Addr]*lease
	changed []*lease
}

func newTable() *table {
	return &table{byMAC: make(map[string]*lease), byAddr: make(map[netip.Addr]*lease)}
}

func newPool(p Pool, store LeaseStore, storeErr func(error)) *pool {
	return &pool{
		first:     be32(p.Start.As4()),
		size:      uint32(rangeSize(p.Start, p.End)),
		leaseTime: p.LeaseTime,
		store:     store,
		storeErr:  storeErr,
		mem:       newTable(),
	}
}

// reserved is the reservations as one decision sees them: mac's own
// address, and the addresses reserved for other MACs.
type reserved struct {
	own    netip.Addr
	others map[netip.Addr]bool
}

// reservedFor returns mac's reserved address, and the set of addresses
// reserved for other MACs.
func (p *pool) reservedFor(ctx context.Context, mac string) (reserved, error) {
	r := reserved{others: map[netip.Addr]bool{}}
	rs, err := p.reservations(ctx)
	for _, x := range rs {
		if x.MAC == mac {
			r.own = x.Addr
		} else {
			r.others[x.Addr] = true
		}
	}
	return r, err
}

// keepFor returns whether a decision that sees r keeps a stored lease on a:
// one inside the range or on a reserved address outside it. Leases on
// other addresses are left from an earlier range.
func (p *pool) keepFor(r reserved) func(netip.Addr) bool {
	return func(a netip.Addr) bool { return p.contains(a) || a == r.own || r.others[a] }
}

func keepAll(netip.Addr) bool { return true }

func (p *pool) contains(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	v := be32(a.As4())
	return v >= p.first && v-p.first < p.size
}

// offer returns the address for mac, reserving it for OfferHold if it is
// not already leased.
// fresh reports an address not bound to mac before (worth probing).
func (p *pool) offer(ctx context.Context, mac string, now time.Time) (a netip.Addr, fresh bool, err error) {
	r, err := p.reservedFor(ctx, mac)
	if err != nil {
		return netip.Addr{}, false, err
	}
	err = p.decide(ctx, p.keepFor(r), func(t *table) error {
		a, fresh, err = p.offerIn(t, mac, r, now)
		return err
	})
	return a, fresh, err
}

func (p *pool) offerIn(t *table, mac string, r reserved, now time.Time) (netip.Addr, bool, error) {
	if l := t.byMAC[mac]; l != nil && (!r.own.IsValid() || l.addr == r.own) && !r.others[l.addr] {
		if l.expiry.Before(now.Add(OfferHold)) {
			l.expiry = now.Add(OfferHold)
			t.changed = append(t.changed, l)
		}
		return l.addr, false, nil
	}
	if r.own.IsValid() {
		t.bind(mac, r.own, now.Add(OfferHold))
		return r.own, true, nil
	}
	a, ok := p.free(t, now, r.others)
	if !ok {
		return netip.Addr{}, false, ErrPoolExhausted
	}
	t.bind(mac, a, now.Add(OfferHold))
	return a, true, nil
}

// request confirms a lease on addr for mac and reports whether it may be
// ACKed. It succeeds if addr is mac's address or is free.
// A MAC with a reservation gets only its reserved address; an address
// reserved for another MAC is refused.
//
// With a store, a request whose stored lease still has at least
// coveredShare of a lease time to run is granted that rest and changes
// nothing: a boot asks three times within seconds (firmware PXE, iPXE,
// the agent), and a storm's lease writes, one commit each, held every
// other request. What the client is told never outlasts what the store
// has.
func (p *pool) request(ctx context.Context, mac string, a netip.Addr, now time.Time) (ok bool, granted time.Duration, err error) {
	r, err := p.reservedFor(ctx, mac)
	if err != nil {
		return false, 0, err
	}
	switch {
	case r.own.IsValid() && a != r.own, r.others[a]:
		return false, 0, nil
	case !r.own.IsValid() && !p.contains(a):
		return false, 0, nil
	}
	err = p.decide(ctx, p.keepFor(r), func(t *table) error {
		ok, granted = p.requestIn(t, mac, a, r, now)
		return nil
	})
	return ok, granted, err
}

// coveredShare, in eighths of the lease time: a stored lease with at
// least this much left is granted as it is (RFC 2131's T2 is 7/8).
const coveredShare = 7

func (p *pool) requestIn(t *table, mac string, a netip.Addr, r reserved, now time.Time) (bool, time.Duration) {
	if l := t.byMAC[mac]; l != nil && l.addr == a {
		if left := l.expiry.Sub(now); p.store != nil && left >= p.leaseTime*coveredShare/8 {
			return true, left
		}
		l.expiry = now.Add(p.leaseTime)
		t.changed = append(t.changed, l)
		return true, p.leaseTime
	}
	if other := t.byAddr[a]; other != nil && !other.expiry.Before(now) && !r.own.IsValid() {
		return false, 0
	}
	t.bind(mac, a, now.Add(p.leaseTime))
	return true, p.leaseTime
}

// release ends mac's lease on addr early; the record stays for stability.
func (p *pool) release(ctx context.Context, mac string, a netip.Addr, now time.Time) error {
	return p.decide(ctx, keepAll, func(t *table) error {
		if l := t.byMAC[mac]; l != nil && l.addr == a && l.expiry.After(now) {
			l.expiry = now
			t.changed = append(t.changed, l)
		}
		return nil
	})
}

// decline quarantines addr for a lease time after mac reported it in use
// by someone else (RFC 2131 4.3.3).
func (p *pool) decline(ctx context.Context, mac string, a netip.Addr, now time.Time) error {
	return p.decide(ctx, keepAll, func(t *table) error {
		if l := t.byMAC[mac]; l != nil && l.addr == a {
			delete(t.byMAC, mac)
			l.mac = ""
			l.expiry = now.Add(p.leaseTime)
			t.changed = append(t.changed, l)
		}
		return nil
	})
}

// decide runs fn on the lease table: the in-memory one, or the stored one
// (its leases on addresses keep accepts) inside a store transaction that
// records what fn changed (fn may run again when another server changed a
// lease meanwhile).
func (p *pool) decide(ctx context.Context, keep func(netip.Addr) bool, fn func(*table) error) error {
	if p.store == nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return fn(p.mem)
	}
	ctx, cancel := context.WithTimeout(ctx, StoreTimeout)
	defer cancel()
	err := p.store.UpdateLeases(ctx, func(stored []Lease) ([]Lease, error) {
		t := p.load(stored, keep)
		if err := fn(t); err != nil {
			return nil, err
		}
		out := make([]Lease, len(t.changed))
		for i, l := range t.changed {
			out[i] = Lease{MAC: l.mac, Addr: l.addr, Expiry: l.expiry}
		}
		return out, nil
	})
	if err != nil && !errors.Is(err, ErrPoolExhausted) {
		p.storeErr(err)
	}
	return err
}

// bind records addr for mac, dropping any previous record of either.
func (t *table) bind(mac string, a netip.Addr, expiry time.Time) *lease {
	if old := t.byMAC[mac]; old != nil {
		delete(t.byAddr, old.addr)
	}
	if old := t.byAddr[a]; old != nil && old.mac != "" {
		delete(t.byMAC, old.mac)
	}
	l := &lease{mac: mac, addr: a, expiry: expiry}
	t.byMAC[mac] = l
	t.byAddr[a] = l
	t.changed = append(t.changed, l)
	return l
}

// free returns the lowest never-used address, or else the address whose
// record expired longest ago.
func (p *pool) free(t *table, now time.Time, reserved map[netip.Addr]bool) (netip.Addr, bool) {
	if p.inRange(t) < int(p.size) {
		for i := uint32(0); i < p.size; i++ {
			a := addrFrom32(p.first + i)
			if t.byAddr[a] == nil && !reserved[a] {
				return a, true
			}
		}
	}
	var oldest *lease
	for _, l := range t.byAddr {
		if reserved[l.addr] || !p.contains(l.addr) {
			continue
		}
		if l.expiry.Before(now) && (oldest == nil || l.expiry.Before(oldest.expiry)) {
			oldest = l
		}
	}
	if oldest == nil {
		return netip.Addr{}, false
	}
	return oldest.addr, true
}

// inRange counts the records of addresses in the range (records of
// reserved addresses outside it are not).
func (p *pool) inRange(t *table) int {
	n := len(t.byAddr)
	for a := range t.byAddr {
		if !p.contains(a) {
			n--
		}
	}
	return n
}

func addrFrom32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
