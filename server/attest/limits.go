package attest

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Limits bound what a client that has proven nothing can hold. The zero
// value of each field means its default; the defaults suit a LAN where
// each machine has its own address.
type Limits struct {
	// HelloTimeout is the time from the end of the QUIC handshake to a
	// complete hello; default 5s. A connection that has not sent one by
	// then is closed.
	HelloTimeout time.Duration
	// FrameTimeout is the time from the first byte of any message to its
	// last; default 5s.
	FrameTimeout time.Duration
	// ConnsPerSource is how many QUIC connections (handshaking or
	// established) one source address may hold; default 16.
	ConnsPerSource int
	// ExchangesPerSource is how many exchanges (from the first byte of a
	// hello to the last reply) one source address may have in progress;
	// default 4.
	ExchangesPerSource int
	// RetryAbove is the number of connections in their handshake (not
	// yet proven to come from where they claim) above which a new
	// connection must first prove its source address with a QUIC Retry
	// (RFC 9000, section 8.1.2); default 64. A source that holds half its
	// ConnsPerSource is asked for a Retry in any case. Negative: always.
	RetryAbove int
	// LoadAbove is the number of connections held in total above which
	// the server is loaded: each source may then hold only a quarter of
	// ConnsPerSource (at least 1), so that a few busy sources cannot
	// crowd out machines that hold nothing; default 128.
	LoadAbove int
	// NoiseLogInterval is how often a summary of unauthenticated noise is
	// logged (only when there was some); default 1m.
	NoiseLogInterval time.Duration
	// PersonTimeout is how long an exchange waits for a person's answer
	// (a login, a menu choice) at the machine's console; default 3m.
	PersonTimeout time.Duration
	// WaitingPerSource is how many exchanges one source address may have
	// waiting for a person; default 2. A waiting exchange holds none of
	// the exchange slots above, only one of these.
	WaitingPerSource int
	// MaxWaiting is how many exchanges may wait for a person at once;
	// default 64.
	MaxWaiting int
}

// Default limits.
const (
	DefaultHelloTimeout       = 5 * time.Second
	DefaultFrameTimeout       = 5 * time.Second
	DefaultConnsPerSource     = 16
	DefaultExchangesPerSource = 4
	DefaultRetryAbove         = 64
	DefaultLoadAbove          = 128
	DefaultNoiseLogInterval   = time.Minute
	DefaultPersonTimeout      = 3 * time.Minute
	DefaultWaitingPerSource   = 2
	DefaultMaxWaiting         = 64
)

func (l Limits) withDefaults() Limits {
	l.HelloTimeout = orDefault(l.HelloTimeout, DefaultHelloTimeout)
	l.FrameTimeout = orDefault(l.FrameTimeout, DefaultFrameTimeout)
	l.ConnsPerSource = orDefault(l.ConnsPerSource, DefaultConnsPerSource)
	l.ExchangesPerSource = orDefault(l.ExchangesPerSource, DefaultExchangesPerSource)
	l.RetryAbove = orDefault(l.RetryAbove, DefaultRetryAbove)
	l.LoadAbove = orDefault(l.LoadAbove, DefaultLoadAbove)
	l.NoiseLogInterval = orDefault(l.NoiseLogInterval, DefaultNoiseLogInterval)
	l.PersonTimeout = orDefault(l.PersonTimeout, DefaultPersonTimeout)
	l.WaitingPerSource = orDefault(l.WaitingPerSource, DefaultWaitingPerSource)
	l.MaxWaiting = orDefault(l.MaxWaiting, DefaultMaxWaiting)
	return l
}

// sources counts connections and exchanges per source address, and the
// connections still in their handshake. It is safe for concurrent use.
type sources struct {
	connLimit, exchangeLimit int
	loadAbove                int
	waitLimit, maxWaiting    int

	mu          sync.Mutex
	conns       map[netip.Addr]int // guarded by mu
	exchanges   map[netip.Addr]int // guarded by mu
	total       int                // guarded by mu; sum of conns
	handshaking int                // guarded by mu
	waiting     map[netip.Addr]int // guarded by mu; exchanges waiting for a person
	waitingAll  int                // guarded by mu; sum of waiting
}

func newSources(l Limits) *sources {
	return &sources{
		connLimit:     l.ConnsPerSource,
		exchangeLimit: l.ExchangesPerSource,
		loadAbove:     l.LoadAbove,
		waitLimit:     l.WaitingPerSource,
		maxWaiting:    l.MaxWaiting,
		conns:         make(map[netip.Addr]int),
		exchanges:     make(map[netip.Addr]int),
		waiting:       make(map[netip.Addr]int),
	}
}

// addConn counts a connection from a, in its handshake, and reports
// whether it is within the limit; if not, nothing is counted.
func (s *sources) addConn(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[a] >= s.connLimitLocked() {
		return false
	}
	s.conns[a]++
	s.total++
	s.handshaking++
	return true
}

// connLimitLocked is a source's quota now: ConnsPerSource, or a quarter of
// it under load.
func (s *sources) connLimitLocked() int {
	if s.total >= s.loadAbove {
		return max(1, s.connLimit/4)
	}
	return s.connLimit
}

// dropConn uncounts a connection; handshaking says whether it was still
// counted as in its handshake (see handshakeDone).
func (s *sources) dropConn(a netip.Addr, handshaking bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	decr(s.conns, a)
	s.total--
	if handshaking {
		s.handshaking--
	}
}

// handshakeDone moves a connection out of the handshaking count.
func (s *sources) handshakeDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handshaking--
}

// addExchange counts an exchange from a and reports whether it is within
// the limit; if not, nothing is counted.
func (s *sources) addExchange(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exchanges[a] >= s.exchangeLimit {
		return false
	}
	s.exchanges[a]++
	return true
}

func (s *sources) dropExchange(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	decr(s.exchanges, a)
}

// addWaiting counts an exchange from a waiting for a person and reports
// whether it is within the source's and the server's bounds; if not,
// nothing is counted.
func (s *sources) addWaiting(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting[a] >= s.waitLimit || s.waitingAll >= s.maxWaiting {
		return false
	}
	s.waiting[a]++
	s.waitingAll++
	return true
}

func (s *sources) dropWaiting(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	decr(s.waiting, a)
	s.waitingAll--
}

// waitingCount returns the exchanges waiting for a person.
func (s *sources) waitingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitingAll
}

func decr(m map[netip.Addr]int, a netip.Addr) {
	if m[a] <= 1 {
		delete(m, a)
	} else {
		m[a]--
	}
}

// needRetry reports whether a new connection from a must validate its
// address first: the server is under load (above connections in their
// handshake, where spoofed packets pile up), or a holds half its quota
// (so that spoofed packets cannot fill a victim's quota). A source at
// its full quota is refused at once instead (admit), without the Retry
// round trip.
func (s *sources) needRetry(a netip.Addr, above int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, limit := s.conns[a], s.connLimitLocked()
	if n >= limit {
		return false
	}
	return s.handshaking >= above || 2*n >= limit
}

// counts returns the connections, those in their handshake and the
// exchanges held in total.
func (s *sources) counts() (conns, handshaking, exchanges int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.exchanges {
		exchanges += n
	}
	return s.total, s.handshaking, exchanges
}

// sourceAddr is the IP address of a UDP peer; ports do not count (a
// client picks a new one per connection). IPv4-mapped IPv6 addresses are
// unmapped so that one host has one key.
func sourceAddr(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		ip, _ := netip.AddrFromSlice(u.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
