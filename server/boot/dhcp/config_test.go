package dhcp

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	clock := &fakeClock{time.Unix(1e9, 0)}
	ip := netip.MustParseAddr
	tests := []struct {
		name   string
		modify func(c *Config)
	}{
		{"unknown_mode", func(c *Config) { c.Mode = 7 }},
		{"no_server_ip", func(c *Config) { c.ServerIP = netip.Addr{} }},
		{"ipv6_server_ip", func(c *Config) { c.ServerIP = ip("2001:db8::1") }},
		{"broadcast_server_ip", func(c *Config) { c.ServerIP = ip("255.255.255.255") }},
		{"bad_boot_file", func(c *Config) { c.EFIFile = "../ipxe.efi" }},
		{"no_subnet", func(c *Config) { c.Pool.Subnet = netip.Prefix{} }},
		{"subnet_too_small", func(c *Config) { c.Pool.Subnet = netip.MustParsePrefix("192.0.2.100/31") }},
		{"start_outside_subnet", func(c *Config) { c.Pool.Start = ip("198.51.100.1") }},
		{"end_is_broadcast", func(c *Config) { c.Pool.End = ip("192.0.2.255") }},
		{"start_is_network", func(c *Config) { c.Pool.Start = ip("192.0.2.0") }},
		{"start_after_end", func(c *Config) { c.Pool.Start, c.Pool.End = c.Pool.End, c.Pool.Start }},
		{"range_contains_server", func(c *Config) { c.ServerIP = ip("192.0.2.101") }},
		{"range_too_large", func(c *Config) {
			c.Pool.Subnet = netip.MustParsePrefix("10.0.0.0/8")
			c.Pool.Start, c.Pool.End, c.Pool.Router = ip("10.0.0.2"), ip("10.2.0.0"), netip.Addr{}
		}},
		{"router_outside_subnet", func(c *Config) { c.Pool.Router = ip("198.51.100.1") }},
		{"lease_too_short", func(c *Config) { c.Pool.LeaseTime = time.Second }},
		{"dns_unspecified", func(c *Config) { c.Pool.DNS = []netip.Addr{ip("0.0.0.0")} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fullConfig(clock)
			cfg.ServerIP = serverIP
			tt.modify(&cfg)
			if _, err := New(cfg, nil); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestConfigZeroValues(t *testing.T) {
	// Proxy mode needs only the server IP; pool fields are ignored.
	s, err := New(Config{ServerIP: serverIP, Pool: Pool{Start: netip.MustParseAddr("1.2.3.4")}}, nil)
	if err != nil {
		t.Fatalf("New(proxy, zero fields) = %v", err)
	}
	c := s.cfg
	if c.Mode != ModeProxy || c.HTTPPort != 80 || c.BIOSFile != "undionly.kpxe" || c.EFIFile != "ipxe.efi" || c.Now == nil {
		t.Errorf("defaults = %+v", c)
	}
	// Full mode with the zero lease time gets DefaultLeaseTime.
	cfg := fullConfig(&fakeClock{})
	cfg.ServerIP, cfg.Pool.LeaseTime, cfg.Pool.Router, cfg.Pool.DNS = serverIP, 0, netip.Addr{}, nil
	s, err = New(cfg, nil)
	if err != nil || s.cfg.Pool.LeaseTime != DefaultLeaseTime {
		t.Errorf("New(full, zero lease) = %v, lease %v", err, s.cfg.Pool.LeaseTime)
	}
	if err := s.Serve(t.Context()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Serve without interface = %v, want ErrInvalidConfig", err)
	}
}
