// Package netup brings up the agent's network: it waits for a link after
// the NIC driver loaded, runs DHCPv4 with jittered exponential backoff,
// configures the address (with the lease's lifetime), routes (RFC 3442
// classless routes, else option 3) and /etc/resolv.conf, and keeps the lease
// renewed.
//
// The kernel removes the address when its lifetime ends, so a machine
// whose agent stopped renewing loses the address instead of keeping a
// stale one.
package netup

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/sealroot/sealroot/agent/backoff"
	"github.com/vishvananda/netlink"
)

// VendorClass is sent as option 60 so the sealroot server's ProxyDHCP can
// tell the agent from PXE firmware.
const VendorClass = "sealroot-agent"

// Config configures Up. The zero value picks the first link with carrier
// in the current network namespace.
type Config struct {
	// Interface to configure; default: the first Ethernet device with
	// carrier.
	Interface string
	// LinkTimeout bounds the wait for a link with carrier; default 60s.
	LinkTimeout time.Duration
	// AttemptTimeout bounds one DISCOVER..ACK exchange; default 10s.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay between DHCP attempts;
	// defaults 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	// ResolvConf is the file to write; default /etc/resolv.conf.
	ResolvConf string
	// Netlink is the handle to configure links with; default the current
	// network namespace.
	Netlink *netlink.Handle
	// Rand jitters the backoff; nil uses math/rand/v2's global source.
	Rand *mrand.Rand
	// Logger defaults to a null logger.
	Logger hclog.Logger
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.LinkTimeout, 60*time.Second)
	def(&c.AttemptTimeout, 10*time.Second)
	def(&c.MinBackoff, time.Second)
	def(&c.MaxBackoff, 30*time.Second)
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	if c.Netlink == nil {
		c.Netlink = &netlink.Handle{}
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c
}

// Lease is a configured DHCP lease. Its methods are safe for concurrent
// use; Close it to stop using the DHCP socket (the address stays until its
// lifetime ends).
type Lease struct {
	cfg    Config
	link   netlink.Link
	client *nclient4.Client
	log    hclog.Logger

	mu    sync.Mutex // guards the fields below
	lease *nclient4.Lease
	set   settings
}

// Up waits for a link, obtains a lease (retrying until ctx is done) and
// configures the link from it.
func Up(ctx context.Context, cfg Config) (*Lease, error) {
	cfg = cfg.withDefaults()
	linkCtx, cancel := context.WithTimeout(ctx, cfg.LinkTimeout)
	link, err := waitLink(linkCtx, cfg.Netlink, cfg.Interface)
	cancel()
	if err != nil {
		return nil, err
	}
	name := link.Attrs().Name
	client, err := nclient4.New(name, nclient4.WithTimeout(cfg.AttemptTimeout/3), nclient4.WithRetry(3))
	if err != nil {
		return nil, fmt.Errorf("dhcp client on %s: %w", name, err)
	}
	l := &Lease{cfg: cfg, link: link, client: client, log: cfg.Logger.Named("netup").With("link", name)}
	nl, err := l.request(ctx)
	if err == nil {
		err = l.apply(nl)
	}
	if err != nil {
		client.Close()
		return nil, err
	}
	return l, nil
}

// request runs DISCOVER..ACK until it succeeds or ctx is done.
func (l *Lease) request(ctx context.Context) (*nclient4.Lease, error) {
	b := backoff.New(l.cfg.MinBackoff, l.cfg.MaxBackoff, l.cfg.Rand)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, l.cfg.AttemptTimeout)
		nl, err := l.client.Request(actx, l.modifiers()...)
		cancel()
		if err == nil {
			return nl, nil
		}
		l.log.Warn("dhcp attempt failed", "attempt", attempt, "error", err)
		if serr := b.Sleep(ctx); serr != nil {
			return nil, fmt.Errorf("dhcp on %s: no lease after %d attempts (last: %v): %w", l.Interface(), attempt, err, serr)
		}
	}
}

func (l *Lease) modifiers() []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(VendorClass)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionInterfaceMTU,
			dhcpv4.OptionDNSDomainSearchList, dhcpv4.OptionIPAddressLeaseTime),
	}
}

// apply configures the link from nl and makes it the current lease.
func (l *Lease) apply(nl *nclient4.Lease) error {
	s, err := settingsFrom(nl.ACK)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := configure(l.cfg.Netlink, l.link, l.set, s, time.Since(nl.CreationTime)); err != nil {
		return err
	}
	if rc := resolvConf(s); rc != nil {
		if err := os.WriteFile(l.cfg.ResolvConf, rc, 0o644); err != nil {
			return err
		}
	}
	l.lease, l.set = nl, s
	l.log.Info("lease configured", "addr", s.Addr, "lease", s.Lease, "routes", fmt.Sprint(s.Routes))
	return nil
}

// Interface returns the configured link's name.
func (l *Lease) Interface() string { return l.link.Attrs().Name }

// Addr returns the leased address with its prefix length.
func (l *Lease) Addr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.set.Addr.String()
}

// Close releases the DHCP socket; the configuration stays.
func (l *Lease) Close() error { return l.client.Close() }
