package tunnel

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/sealroot/sealroot/wire"
)

func TestCompute(t *testing.T) {
	priv, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	server, _ := NewKey()
	spub := server.PublicKey()
	good := wire.TunnelPlan{ServerKey: spub[:], Endpoint: "192.168.77.1:51820", Address: "10.200.0.84/16", ServerAddr: "10.200.0.1"}
	s, err := Compute(&good, priv)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	p := s.Device.Peers[0]
	if *s.Device.PrivateKey != priv || !s.Device.ReplacePeers || len(s.Device.Peers) != 1 {
		t.Errorf("device = %+v, want our key and the server as the only peer", s.Device)
	}
	if p.PublicKey != spub || p.Endpoint.String() != good.Endpoint || *p.PersistentKeepaliveInterval != Keepalive {
		t.Errorf("peer = %+v", p)
	}
	if len(p.AllowedIPs) != 1 || p.AllowedIPs[0].String() != "10.200.0.1/32" || !p.ReplaceAllowedIPs {
		t.Errorf("allowed IPs = %v, want only the server's /32", p.AllowedIPs)
	}
	if s.Address != netip.MustParsePrefix("10.200.0.84/16") || s.ServerAddr != netip.MustParseAddr("10.200.0.1") {
		t.Errorf("addresses = %v, %v", s.Address, s.ServerAddr)
	}

	bad := []struct {
		name string
		mod  func(*wire.TunnelPlan)
	}{
		{"short_server_key", func(p *wire.TunnelPlan) { p.ServerKey = p.ServerKey[:31] }},
		{"endpoint_hostname", func(p *wire.TunnelPlan) { p.Endpoint = "sealroot.lan:51820" }},
		{"endpoint_no_port", func(p *wire.TunnelPlan) { p.Endpoint = "192.168.77.1:0" }},
		{"address_not_cidr", func(p *wire.TunnelPlan) { p.Address = "10.200.0.84" }},
		{"server_addr_is_ours", func(p *wire.TunnelPlan) { p.ServerAddr = "10.200.0.84" }},
		{"server_addr_ipv6", func(p *wire.TunnelPlan) { p.ServerAddr = "fd00::1" }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.mod(&p)
			if _, err := Compute(&p, priv); !errors.Is(err, ErrPlan) {
				t.Fatalf("Compute = %v, want ErrPlan", err)
			}
		})
	}
	if _, err := Compute(nil, priv); !errors.Is(err, ErrPlan) {
		t.Fatalf("Compute(nil) = %v, want ErrPlan", err)
	}
}
