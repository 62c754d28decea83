package dhcp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/sealroot/sealroot/ipxe"
	"github.com/sealroot/sealroot/server/servestats"
)

// Mode selects how the server answers.
type Mode int

const (
	// ModeProxy answers only PXE clients and assigns no addresses, so it
	// can run beside the site's DHCP server (PXE spec 2.1, ProxyDHCP). It
	// listens on port 67 for DISCOVER and on port 4011 for the follow-up
	// REQUEST.
	ModeProxy Mode = iota
	// ModeFull is a complete DHCP server with an in-memory lease pool, for
	// an isolated lab network with no other DHCP server.
	ModeFull
)

func (m Mode) String() string {
	switch m {
	case ModeProxy:
		return "proxy"
	case ModeFull:
		return "full"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Defaults for zero Config fields.
const (
	DefaultHTTPPort  = 80
	DefaultBIOSFile  = "undionly.kpxe"
	DefaultEFIFile   = "ipxe.efi"
	DefaultLeaseTime = time.Hour
	// OfferHold is how long an offered address stays reserved for the
	// client it was offered to before it REQUESTs it.
	OfferHold = 30 * time.Second
	// MaxPoolSize bounds the number of addresses (and so lease records).
	MaxPoolSize = 1 << 16
)

// ErrInvalidConfig wraps every configuration error.
var ErrInvalidConfig = errors.New("dhcp: invalid config")

// Config configures a Server. The zero value of each field is documented.
type Config struct {
	// Mode is ModeProxy (zero value) or ModeFull.
	Mode Mode
	// Interface is the network interface Serve binds to. Required by
	// Serve; Respond does not use it.
	Interface string
	// ServerIP is this server's IPv4 address on Interface. It is the
	// DHCP server identifier, the TFTP next-server and the host of the
	// boot script URL. Required.
	ServerIP netip.Addr
	// HTTPPort is the port of the boot HTTP server. Zero: 80.
	HTTPPort uint16
	// BIOSFile and EFIFile are the TFTP names of the iPXE binaries for
	// legacy BIOS (arch 0) and x86-64 UEFI (arch 7, 9). Zero:
	// "undionly.kpxe" and "ipxe.efi".
	BIOSFile, EFIFile string
	// HTTPBootPath is the path on the boot HTTP server of the EFI image
	// UEFI HTTP boot clients (vendor class "HTTPClient", arch 16) load
	// directly: a signed UKI, or iPXE. It must start with "/" and be
	// printable ASCII without spaces, at most 100 bytes. Empty: HTTP boot
	// clients get no answer (ProxyDHCP) or a lease without boot file
	// (full DHCP).
	HTTPBootPath string
	// Pool is the address pool. Used, and required, only in ModeFull.
	Pool Pool
	// Now is the clock for leases. Nil: time.Now.
	Now func() time.Time
	// Leases, in ModeFull, holds the leases (each decision a transaction
	// there, so servers sharing it share the pool) and the reservations.
	// Nil: leases in memory only, no reservations.
	Leases LeaseStore
	// Stats, if set, counts requests by result (reply, no-reply,
	// malformed, handled, send-failed) and the bytes received and sent.
	Stats *servestats.Counter
	// Probe, in ModeFull, reports whether something already answers for
	// an address (ARPProber); such an address is not offered. Nil: no
	// probe.
	Probe func(netip.Addr) bool
}

// Pool describes the addresses handed out in ModeFull.
type Pool struct {
	// Subnet is the lab network, e.g. 192.0.2.0/24. Required.
	Subnet netip.Prefix
	// Start and End bound the pool, inclusive. Both inside Subnet,
	// neither the network nor the broadcast address, at most MaxPoolSize
	// addresses, not containing the ServerIP. Required.
	Start, End netip.Addr
	// Router is the default gateway (option 3). Zero: none.
	Router netip.Addr
	// DNS are the name servers (option 6). Empty: none.
	DNS []netip.Addr
	// LeaseTime is the lease duration. Zero: DefaultLeaseTime. At most
	// a year.
	LeaseTime time.Duration
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.HTTPPort == 0 {
		c.HTTPPort = DefaultHTTPPort
	}
	if c.BIOSFile == "" {
		c.BIOSFile = DefaultBIOSFile
	}
	if c.EFIFile == "" {
		c.EFIFile = DefaultEFIFile
	}
	if c.Pool.LeaseTime == 0 {
		c.Pool.LeaseTime = DefaultLeaseTime
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// validate checks a Config that has its defaults applied.
func (c Config) validate() error {
	if c.Mode != ModeProxy && c.Mode != ModeFull {
		return fmt.Errorf("%w: unknown mode %v", ErrInvalidConfig, c.Mode)
	}
	if !isUsableIPv4(c.ServerIP) {
		return fmt.Errorf("%w: server IP %v is not a unicast IPv4 address", ErrInvalidConfig, c.ServerIP)
	}
	for _, f := range []string{c.BIOSFile, c.EFIFile} {
		if err := ipxe.CheckName(f); err != nil {
			return fmt.Errorf("%w: boot file: %v", ErrInvalidConfig, err)
		}
	}
	if err := checkURLPath(c.HTTPBootPath); err != nil {
		return fmt.Errorf("%w: HTTP boot path: %v", ErrInvalidConfig, err)
	}
	if c.Mode == ModeFull {
		return c.validatePool()
	}
	return nil
}

func (c Config) validatePool() error {
	p := c.Pool
	switch {
	case !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() || p.Subnet.Bits() < 8 || p.Subnet.Bits() > 30:
		return fmt.Errorf("%w: subnet %v must be an IPv4 prefix /8../30", ErrInvalidConfig, p.Subnet)
	case !isHostIn(p.Subnet, p.Start) || !isHostIn(p.Subnet, p.End):
		return fmt.Errorf("%w: range %v-%v must be host addresses inside %v", ErrInvalidConfig, p.Start, p.End, p.Subnet)
	case p.End.Less(p.Start):
		return fmt.Errorf("%w: range start %v after end %v", ErrInvalidConfig, p.Start, p.End)
	case rangeSize(p.Start, p.End) > MaxPoolSize:
		return fmt.Errorf("%w: range %v-%v larger than %d addresses", ErrInvalidConfig, p.Start, p.End, MaxPoolSize)
	case !c.ServerIP.Less(p.Start) && !p.End.Less(c.ServerIP):
		return fmt.Errorf("%w: range %v-%v contains the server IP %v", ErrInvalidConfig, p.Start, p.End, c.ServerIP)
	case p.Router.IsValid() && !isHostIn(p.Subnet, p.Router):
		return fmt.Errorf("%w: router %v outside %v", ErrInvalidConfig, p.Router, p.Subnet)
	case p.LeaseTime < time.Minute || p.LeaseTime > 365*24*time.Hour:
		return fmt.Errorf("%w: lease time %v not in [1m, 1y]", ErrInvalidConfig, p.LeaseTime)
	}
	for _, d := range p.DNS {
		if !isUsableIPv4(d) {
			return fmt.Errorf("%w: DNS server %v is not a unicast IPv4 address", ErrInvalidConfig, d)
		}
	}
	return nil
}

func isUsableIPv4(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// isHostIn reports whether a is inside p and is neither its network nor
// its broadcast address.
func isHostIn(p netip.Prefix, a netip.Addr) bool {
	if !a.Is4() || !p.Contains(a) {
		return false
	}
	return a != p.Masked().Addr() && a != broadcast(p)
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := ^uint32(0) >> p.Bits()
	v := be32(b) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func rangeSize(start, end netip.Addr) int64 {
	return int64(be32(end.As4())) - int64(be32(start.As4())) + 1
}

// checkURLPath accepts "" or an absolute URL path of printable ASCII
// without spaces, at most 100 bytes, so the URL fits the BOOTP file field.
func checkURLPath(p string) error {
	if p == "" {
		return nil
	}
	if p[0] != '/' || len(p) > 100 {
		return fmt.Errorf("%q: want an absolute path of at most 100 bytes", p)
	}
	for _, r := range p {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("%q: want printable ASCII without spaces", p)
		}
	}
	return nil
}
