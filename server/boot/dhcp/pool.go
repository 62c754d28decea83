package dhcp

import (
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
	stored time.Time // the expiry the LeaseStore has for this record; zero: none
}

// pool is an in-memory lease table. Its size is bounded by the range: there
// is at most one record per address. Safe for concurrent use.
type pool struct {
	first     uint32 // first address of the range
	size      uint32
	leaseTime time.Duration

	// store, when not nil, persists leases (at ACK, RELEASE and
	// DECLINE; offers are held in memory only) and holds reservations.
	store    LeaseStore
	storeErr func(error)

	mu     sync.Mutex
	byMAC  map[string]*lease     // guarded by mu
	byAddr map[netip.Addr]*lease // guarded by mu
}

func newPool(p Pool, store LeaseStore, storeErr func(error)) *pool {
	return &pool{
		first:     be32(p.Start.As4()),
		size:      uint32(rangeSize(p.Start, p.End)),
		leaseTime: p.LeaseTime,
		store:     store,
		storeErr:  storeErr,
		byMAC:     make(map[string]*lease),
		byAddr:    make(map[netip.Addr]*lease),
	}
}

// reservedFor returns mac's reserved address, and the set of addresses
// reserved for other MACs.
func (p *pool) reservedFor(mac string) (netip.Addr, map[netip.Addr]bool) {
	var own netip.Addr
	others := map[netip.Addr]bool{}
	for _, r := range p.reservations() {
		if r.MAC == mac {
			own = r.Addr
		} else {
			others[r.Addr] = true
		}
	}
	return own, others
}

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
func (p *pool) offer(mac string, now time.Time) (a netip.Addr, fresh bool, err error) {
	own, others := p.reservedFor(mac)
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byMAC[mac]; l != nil && (!own.IsValid() || l.addr == own) && !others[l.addr] {
		if l.expiry.Before(now.Add(OfferHold)) {
			l.expiry = now.Add(OfferHold)
		}
		return l.addr, false, nil
	}
	if own.IsValid() {
		p.bindLocked(mac, own, now.Add(OfferHold))
		return own, true, nil
	}
	a, ok := p.freeLocked(now, others)
	if !ok {
		return netip.Addr{}, false, ErrPoolExhausted
	}
	p.bindLocked(mac, a, now.Add(OfferHold))
	return a, true, nil
}

// request confirms a lease on addr for mac and reports whether it may be
// ACKed, and for how long. It succeeds if addr is mac's address or is
// free. A MAC with a reservation gets only its reserved address; an
// address reserved for another MAC is refused.
//
// A request whose stored lease still has at least coveredShare of a
// lease time to run is granted that rest without a store write: a boot
// asks three times within seconds (firmware PXE, iPXE, the agent), and a
// storm's writes, one commit each, held every other request. What the
// client is told never outlasts what the store has.
func (p *pool) request(mac string, a netip.Addr, now time.Time) (ok bool, granted time.Duration) {
	own, others := p.reservedFor(mac)
	switch {
	case own.IsValid() && a != own, others[a]:
		return false, 0
	case !own.IsValid() && !p.contains(a):
		return false, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byMAC[mac]; l != nil && l.addr == a {
		if left := l.stored.Sub(now); p.store != nil && left >= p.leaseTime*coveredShare/8 {
			l.expiry = later(l.expiry, l.stored)
			return true, left
		}
		l.expiry = now.Add(p.leaseTime)
		p.persistLocked(l)
		return true, p.leaseTime
	}
	if other := p.byAddr[a]; other != nil && !other.expiry.Before(now) && !own.IsValid() {
		return false, 0
	}
	p.persistLocked(p.bindLocked(mac, a, now.Add(p.leaseTime)))
	return true, p.leaseTime
}

// coveredShare, in eighths of the lease time: a stored lease with at
// least this much left is granted as it is (RFC 2131's T2 is 7/8).
const coveredShare = 7

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// release ends mac's lease on addr early; the record stays for stability.
func (p *pool) release(mac string, a netip.Addr, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byMAC[mac]; l != nil && l.addr == a && l.expiry.After(now) {
		l.expiry = now
		p.persistLocked(l)
	}
}

// decline quarantines addr for a lease time after mac reported it in use
// by someone else (RFC 2131 4.3.3).
func (p *pool) decline(mac string, a netip.Addr, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byMAC[mac]; l != nil && l.addr == a {
		delete(p.byMAC, mac)
		l.mac = ""
		l.expiry = now.Add(p.leaseTime)
		p.persistLocked(l)
	}
}

// bindLocked records addr for mac, dropping any previous record of either.
func (p *pool) bindLocked(mac string, a netip.Addr, expiry time.Time) *lease {
	if old := p.byMAC[mac]; old != nil {
		delete(p.byAddr, old.addr)
	}
	if old := p.byAddr[a]; old != nil && old.mac != "" {
		delete(p.byMAC, old.mac)
	}
	l := &lease{mac: mac, addr: a, expiry: expiry}
	p.byMAC[mac] = l
	p.byAddr[a] = l
	return l
}

// freeLocked returns the lowest never-used address, or else the address
// whose record expired longest ago.
func (p *pool) freeLocked(now time.Time, reserved map[netip.Addr]bool) (netip.Addr, bool) {
	if p.inRangeLocked() < int(p.size) {
		for i := uint32(0); i < p.size; i++ {
			a := addrFrom32(p.first + i)
			if p.byAddr[a] == nil && !reserved[a] {
				return a, true
			}
		}
	}
	var oldest *lease
	for _, l := range p.byAddr {
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

// inRangeLocked counts the records of addresses in the range (records
// of reserved addresses outside it are not).
func (p *pool) inRangeLocked() int {
	n := len(p.byAddr)
	for a := range p.byAddr {
		if !p.contains(a) {
			n--
		}
	}
	return n
}

func addrFrom32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
