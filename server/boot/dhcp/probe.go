package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
)

// DefaultProbeTimeout is how long ARPProber waits for an answer.
const DefaultProbeTimeout = 300 * time.Millisecond

// ARPProber asks, with an ARP request on one interface, whether a host
// already uses an address (RFC 2131 2.2: "the server SHOULD probe the
// reused address before allocating"). Safe for concurrent use: probes
// run at once (a storm of fresh machines waits one timeout, not one per
// machine), one reader takes the replies for all of them.
type ARPProber struct {
	timeout time.Duration
	c       *arp.Client
	closed  atomic.Bool
	done    chan struct{} // closed when read returns

	mu      sync.Mutex
	waiting map[netip.Addr][]chan struct{} // guarded by mu: probes in flight
}

// NewARPProber opens an ARP client on the interface named ifname (in the
// calling thread's network namespace) and starts reading its replies
// until Close. timeout 0: DefaultProbeTimeout.
func NewARPProber(ifname string, timeout time.Duration) (*ARPProber, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("dhcp: probe interface: %w", err)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("dhcp: probe: %w", err)
	}
	if timeout == 0 {
		timeout = DefaultProbeTimeout
	}
	p := &ARPProber{timeout: timeout, c: c, done: make(chan struct{}), waiting: map[netip.Addr][]chan struct{}{}}
	go p.read()
	return p, nil
}

// read hands every ARP reply to the probes of its sender address.
func (p *ARPProber) read() {
	defer close(p.done)
	for {
		pkt, _, err := p.c.Read()
		if err != nil {
			if p.closed.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			continue // a frame that does not parse
		}
		if pkt.Operation != arp.OperationReply {
			continue
		}
		p.mu.Lock()
		for _, ch := range p.waiting[pkt.SenderIP] {
			select {
			case ch <- struct{}{}:
			default: // already answered
			}
		}
		p.mu.Unlock()
	}
}

// Probe reports whether some host answered for a within the timeout. An
// error sending counts as no answer: the probe is advisory, and a client
// that finds the address taken DECLINEs it.
func (p *ARPProber) Probe(a netip.Addr) bool {
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	p.waiting[a] = append(p.waiting[a], ch)
	p.mu.Unlock()
	defer p.forget(a, ch)
	if err := p.c.Request(a); err != nil {
		return false
	}
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-p.done:
		return false
	}
}

func (p *ARPProber) forget(a netip.Addr, ch chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ws := p.waiting[a]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(p.waiting, a)
	} else {
		p.waiting[a] = ws
	}
}

// Close closes the ARP socket and waits for the reader.
func (p *ARPProber) Close() error {
	p.closed.Store(true)
	err := p.c.Close()
	<-p.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
