package dhcp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkRespondProxy measures parse + decide + encode of a ProxyDHCP
// DISCOVER, the per-packet cost during a boot storm.
func BenchmarkRespondProxy(b *testing.B) {
	s := newTestServer(b, Config{HTTPPort: 8080})
	raw := newMsg(b, dhcpv4.MessageTypeDiscover, mac1, ipxeEFIRFC3004...).ToBytes()
	b.ReportAllocs()
	for b.Loop() {
		req, err := dhcpv4.FromBytes(raw)
		if err != nil {
			b.Fatal(err)
		}
		reply, err := s.Respond(context.Background(), req, PortDHCP)
		if err != nil {
			b.Fatal(err)
		}
		_ = reply.ToBytes()
	}
}

// BenchmarkRespondFullDiscover measures a lab DHCP DISCOVER against a
// pool of 249 addresses, 248 of them held by other clients.
func BenchmarkRespondFullDiscover(b *testing.B) {
	clock := &fakeClock{time.Unix(1e9, 0)}
	cfg := fullConfig(clock)
	cfg.Pool.Start, cfg.Pool.End = mustAddr("192.0.2.2"), mustAddr("192.0.2.250")
	s := newTestServer(b, cfg)
	for i := range 248 {
		mac := []byte{2, 0, 0, 0, byte(i >> 8), byte(i)}
		if _, err := s.Respond(context.Background(), newMsg(b, dhcpv4.MessageTypeDiscover, mac, plainClient...), PortDHCP); err != nil {
			b.Fatal(err)
		}
	}
	req := newMsg(b, dhcpv4.MessageTypeDiscover, mac1, pxeEFI...)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Respond(context.Background(), req, PortDHCP); err != nil {
			b.Fatal(err)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
