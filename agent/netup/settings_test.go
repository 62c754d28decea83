package netup

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func mustAck(t *testing.T, yiaddr string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	mods = append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.ParseIP(yiaddr)),
	}, mods...)
	ack, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func routeStrings(rs []route) []string {
	var out []string
	for _, r := range rs {
		s := r.String()
		if r.OnLink {
			s += " onlink"
		}
		out = append(out, s)
	}
	return out
}

func TestRoutes(t *testing.T) {
	mask24 := dhcpv4.WithNetmask(net.CIDRMask(24, 32))
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want []string
	}{
		{name: "no_router", mods: []dhcpv4.Modifier{mask24}},
		{
			name: "option_3_first_router",
			mods: []dhcpv4.Modifier{mask24, dhcpv4.WithRouter(net.IPv4(10, 0, 0, 1), net.IPv4(10, 0, 0, 2))},
			want: []string{"default via 10.0.0.1"},
		},
		{
			name: "router_off_subnet_is_onlink",
			mods: []dhcpv4.Modifier{mask24, dhcpv4.WithRouter(net.IPv4(192, 168, 9, 1))},
			want: []string{"default via 192.168.9.1 onlink"},
		},
		{
			name: "classless_routes_override_option_3",
			mods: []dhcpv4.Modifier{
				mask24,
				dhcpv4.WithRouter(net.IPv4(10, 0, 0, 99)),
				dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(
					&dhcpv4.Route{Dest: cidr("172.16.0.0/12"), Router: net.IPv4(10, 0, 0, 2)},
					&dhcpv4.Route{Dest: cidr("10.9.0.0/16"), Router: net.IPv4zero},
					&dhcpv4.Route{Dest: cidr("0.0.0.0/0"), Router: net.IPv4(10, 0, 0, 1)},
				)),
			},
			want: []string{"172.16.0.0/12 via 10.0.0.2", "10.9.0.0/16 dev", "default via 10.0.0.1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := settingsFrom(mustAck(t, "10.0.0.50", tt.mods...))
			if err != nil {
				t.Fatalf("settingsFrom() = %v", err)
			}
			if got := routeStrings(s.Routes); !slices.Equal(got, tt.want) {
				t.Errorf("routes = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLeaseTimes(t *testing.T) {
	leaseOpt := func(d time.Duration) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(d))
	}
	tests := []struct {
		name          string
		mods          []dhcpv4.Modifier
		lease, t1, t2 time.Duration
	}{
		{"rfc2131_defaults", []dhcpv4.Modifier{leaseOpt(time.Hour)}, time.Hour, 30 * time.Minute, 52*time.Minute + 30*time.Second},
		{"server_t1_t2", []dhcpv4.Modifier{leaseOpt(time.Hour),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(10 * time.Minute)),
			dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRebindingTimeValue, Value: dhcpv4.Duration(20 * time.Minute)})},
			time.Hour, 10 * time.Minute, 20 * time.Minute},
		{"t1_after_lease_ignored", []dhcpv4.Modifier{leaseOpt(time.Hour),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(2 * time.Hour))}, time.Hour, 30 * time.Minute, 52*time.Minute + 30*time.Second},
		{"no_lease_time_is_infinite", nil, infinite, infinite, infinite},
		{"all_ones_is_infinite", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.Option{
			Code: dhcpv4.OptionIPAddressLeaseTime, Value: dhcpv4.OptionGeneric{Data: []byte{0xff, 0xff, 0xff, 0xff}}})},
			infinite, infinite, infinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lease, t1, t2 := leaseTimes(mustAck(t, "10.0.0.50", tt.mods...))
			if lease != tt.lease || t1 != tt.t1 || t2 != tt.t2 {
				t.Errorf("leaseTimes() = %v, %v, %v; want %v, %v, %v", lease, t1, t2, tt.lease, tt.t1, tt.t2)
			}
		})
	}
}

func TestSettingsFromRejectsBadAddress(t *testing.T) {
	for _, ip := range []string{"0.0.0.0", "255.255.255.255", "224.0.0.1", "2001:db8::1"} {
		if _, err := settingsFrom(mustAck(t, ip)); !errors.Is(err, ErrBadLease) {
			t.Errorf("settingsFrom(yiaddr %s) = %v, want ErrBadLease", ip, err)
		}
	}
}

func TestSettingsFromDefaultsMaskAndMTU(t *testing.T) {
	s, err := settingsFrom(mustAck(t, "10.1.2.3",
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.OptionGeneric{Data: []byte{0x23, 0x28}}})))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Addr.String(); got != "10.1.2.3/8" {
		t.Errorf("address without option 1 = %s, want the class default 10.1.2.3/8", got)
	}
	if s.MTU != 9000 {
		t.Errorf("MTU = %d, want 9000", s.MTU)
	}
}

func TestResolvConf(t *testing.T) {
	s, err := settingsFrom(mustAck(t, "10.0.0.50",
		dhcpv4.WithDNS(net.IPv4(10, 0, 0, 53), net.IPv4(10, 0, 0, 54)),
		dhcpv4.WithOption(dhcpv4.OptDomainName("lab.example"))))
	if err != nil {
		t.Fatal(err)
	}
	got := string(resolvConf(s))
	for _, want := range []string{"domain lab.example\n", "nameserver 10.0.0.53\nnameserver 10.0.0.54\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("resolv.conf = %q, want it to contain %q", got, want)
		}
	}
	if rc := resolvConf(settings{}); rc != nil {
		t.Errorf("resolvConf(no DNS) = %q, want nil (keep the file)", rc)
	}
}
