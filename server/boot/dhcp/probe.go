package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"
)

// DefaultProbeTimeout is how long ARPProber waits for an answer.
const DefaultProbeTimeout = 300 * time.Millisecond

// ARPProber asks, with an ARP request on one interface, whether a host
// already uses an address (RFC 2131 2.2: "the server SHOULD probe the
// reused address before allocating"). Safe for concurrent use; probes
// run one at a time.
type ARPProber struct {
	timeout time.Duration

	mu sync.Mutex // serialises probes: replies are read from one socket
	c  *arp.Client
}

// NewARPProber opens an ARP client on the interface named ifname (in the
// calling thread's network namespace). timeout 0: DefaultProbeTimeout.
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
	return &ARPProber{timeout: timeout, c: c}, nil
}

// Probe reports whether some host answered for a within the timeout. An
// error sending counts as no answer: the probe is advisory, and a client
// that finds the address taken DECLINEs it.
func (p *ARPProber) Probe(a netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.c.SetDeadline(time.Now().Add(p.timeout)); err != nil {
		return false
	}
	_, err := p.c.Resolve(a)
	return err == nil
}

// Close closes the ARP socket.
func (p *ARPProber) Close() error {
	err := p.c.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
