package netup

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// infinite marks a lease or lifetime without end.
const infinite = time.Duration(math.MaxInt64)

// ErrBadLease is wrapped by the errors of settingsFrom.
var ErrBadLease = errors.New("unusable DHCP lease")

// settings is what one DHCP ACK asks the agent to configure.
type settings struct {
	Addr   *net.IPNet
	Lease  time.Duration // infinite when unbounded
	T1, T2 time.Duration // renewal and rebinding times
	Routes []route
	DNS    []net.IP
	Domain string
	Search []string
	MTU    int // 0: leave as is
}

// route is one IPv4 route; a nil Dst is the default route, a nil Gw a
// link-scope route.
type route struct {
	Dst    *net.IPNet
	Gw     net.IP
	OnLink bool // Gw is outside the address's subnet
}

func (r route) String() string {
	dst := "default"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	if r.Gw == nil {
		return dst + " dev"
	}
	return dst + " via " + r.Gw.String()
}

// settingsFrom computes the configuration an ACK describes.
func settingsFrom(ack *dhcpv4.DHCPv4) (settings, error) {
	ip := ack.YourIPAddr.To4()
	if ip == nil || ip.IsUnspecified() || ip.IsMulticast() || ip.Equal(net.IPv4bcast) {
		return settings{}, fmt.Errorf("address %v: %w", ack.YourIPAddr, ErrBadLease)
	}
	mask := ack.SubnetMask()
	if ones, bits := mask.Size(); bits != 32 || ones == 0 {
		mask = ip.DefaultMask()
	}
	s := settings{Addr: &net.IPNet{IP: ip, Mask: mask}}
	s.Lease, s.T1, s.T2 = leaseTimes(ack)
	s.Routes = routes(ack, s.Addr)
	s.DNS = ack.DNS()
	s.Domain = ack.DomainName()
	if l := ack.DomainSearch(); l != nil {
		s.Search = l.Labels
	}
	if b := ack.Options.Get(dhcpv4.OptionInterfaceMTU); len(b) == 2 {
		if mtu := int(b[0])<<8 | int(b[1]); mtu >= 576 {
			s.MTU = mtu
		}
	}
	return s, nil
}

// leaseTimes returns the lease time and T1/T2 (options 51, 58, 59), with
// RFC 2131 defaults of 0.5 and 0.875 of the lease.
func leaseTimes(ack *dhcpv4.DHCPv4) (lease, t1, t2 time.Duration) {
	secs := func(code dhcpv4.OptionCode) (time.Duration, bool) {
		b := ack.Options.Get(code)
		if len(b) != 4 {
			return 0, false
		}
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if v == math.MaxUint32 {
			return infinite, true
		}
		return time.Duration(v) * time.Second, true
	}
	lease, ok := secs(dhcpv4.OptionIPAddressLeaseTime)
	if !ok || lease == infinite {
		return infinite, infinite, infinite
	}
	t1, ok1 := secs(dhcpv4.OptionRenewTimeValue)
	t2, ok2 := secs(dhcpv4.OptionRebindingTimeValue)
	if !ok2 || t2 > lease {
		t2 = lease * 7 / 8
	}
	if !ok1 || t1 > t2 {
		t1 = lease / 2
	}
	return lease, t1, t2
}

// routes returns the routes of RFC 3442 classless static routes (option
// 121) when present (option 3 must then be ignored), else a default route
// via the first router of option 3.
func routes(ack *dhcpv4.DHCPv4, addr *net.IPNet) []route {
	onLink := func(gw net.IP) bool { return !addr.Contains(gw) }
	if rs := ack.ClasslessStaticRoute(); len(rs) > 0 {
		out := make([]route, 0, len(rs))
		for _, r := range rs {
			rt := route{Dst: r.Dest}
			if ones, _ := r.Dest.Mask.Size(); ones == 0 {
				rt.Dst = nil
			}
			if gw := r.Router.To4(); gw != nil && !gw.IsUnspecified() {
				rt.Gw, rt.OnLink = gw, onLink(gw)
			}
			out = append(out, rt)
		}
		return out
	}
	for _, gw := range ack.Router() {
		if gw4 := gw.To4(); gw4 != nil && !gw4.IsUnspecified() {
			return []route{{Gw: gw4, OnLink: onLink(gw4)}}
		}
	}
	return nil
}

// resolvConf renders /etc/resolv.conf for s, or nil if the lease has no
// DNS settings.
func resolvConf(s settings) []byte {
	if len(s.DNS) == 0 && s.Domain == "" && len(s.Search) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("# written by the sealroot agent from its DHCP lease\n")
	if s.Domain != "" {
		fmt.Fprintf(&b, "domain %s\n", s.Domain)
	}
	for _, ip := range s.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", ip)
	}
	if len(s.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s.Search, " "))
	}
	return b.Bytes()
}
