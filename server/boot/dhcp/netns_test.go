package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/sealroot/sealroot/server/metrics"
	"github.com/sealroot/sealroot/server/metrics/metricstest"
	"github.com/sealroot/sealroot/server/servestats"
	"github.com/sealroot/sealroot/test/netnstest"
)

// lab is a server and a client namespace joined by a veth pair: srv0
// (192.0.2.1/24) in the server namespace, cl0 (no address) in the client's.
type lab struct {
	srv, cli *netnstest.NS
}

func newLab(t *testing.T, tag string) *lab {
	t.Helper()
	netnstest.RequireRoot(t)
	suffix := fmt.Sprintf("%s-%d", tag, os.Getpid())
	l := &lab{srv: netnstest.New(t, "sr-dhcps-"+suffix), cli: netnstest.New(t, "sr-dhcpc-"+suffix)}
	if err := l.cli.AddVeth("cl0", "", l.srv, "srv0", netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	return l
}

// serve runs s in the server namespace until the test ends.
func (l *lab) serve(t *testing.T, cfg Config) {
	t.Helper()
	cfg.Interface = "srv0"
	cfg.ServerIP = serverIP
	logger := hclog.New(&hclog.LoggerOptions{Output: logWriter{t}, Level: hclog.Debug})
	s, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.srv.Do(func() error { return s.Serve(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	})
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p[:len(p)-1])
	return len(p), nil
}

// client runs fn with an nclient4 client on cl0 in the client namespace.
// Each try waits timeout; retries cover a server that is still starting.
func (l *lab) client(t *testing.T, timeout time.Duration, tries int, fn func(*nclient4.Client) error) error {
	t.Helper()
	return l.cli.Do(func() error {
		c, err := nclient4.New("cl0", nclient4.WithTimeout(timeout), nclient4.WithRetry(tries))
		if err != nil {
			return fmt.Errorf("nclient4.New: %w", err)
		}
		defer c.Close()
		return fn(c)
	})
}

func TestNetnsProxyDHCP(t *testing.T) {
	l := newLab(t, "proxy")
	l.serve(t, Config{Mode: ModeProxy, HTTPPort: 8080})
	ctx := t.Context()

	var offer *dhcpv4.DHCPv4
	err := l.client(t, 300*time.Millisecond, 8, func(c *nclient4.Client) (err error) {
		offer, err = c.DiscoverOffer(ctx, pxeBIOS...)
		return err
	})
	if err != nil {
		t.Fatalf("BIOS PXE DISCOVER: %v", err)
	}
	if offer.BootFileName != "undionly.kpxe" || !offer.ServerIPAddr.Equal(serverIP.AsSlice()) ||
		!offer.YourIPAddr.IsUnspecified() || offer.ClassIdentifier() != "PXEClient" {
		t.Errorf("proxy offer = %s", offer.Summary())
	}

	t.Run("non_pxe_client_gets_no_offer", func(t *testing.T) {
		err := l.client(t, 300*time.Millisecond, 1, func(c *nclient4.Client) error {
			_, err := c.DiscoverOffer(ctx, plainClient...)
			return err
		})
		if !errors.Is(err, nclient4.ErrNoResponse) {
			t.Errorf("non-PXE DISCOVER = %v, want ErrNoResponse", err)
		}
	})

	t.Run("ipxe_request_on_4011", func(t *testing.T) {
		ack := l.pxeRequest(t, ipxeEFIRFC3004)
		if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != efiURL {
			t.Errorf("4011 reply = %s", ack.Summary())
		}
	})
}

// pxeRequest gives cl0 an address (as the site DHCP would) and sends a
// ProxyDHCP REQUEST to the server's port 4011.
func (l *lab) pxeRequest(t *testing.T, mods []dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	var reply *dhcpv4.DHCPv4
	err := l.cli.Do(func() error {
		link, err := netlink.LinkByName("cl0")
		if err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("192.0.2.10/24")
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("netlink.AddrReplace: %w", err)
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 10)})
		if err != nil {
			return err
		}
		defer conn.Close()
		req := newMsg(t, dhcpv4.MessageTypeRequest, link.Attrs().HardwareAddr,
			append(mods[:len(mods):len(mods)], dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 10)))...)
		reply, err = exchange(conn, req, &net.UDPAddr{IP: serverIP.AsSlice(), Port: int(PortPXE)})
		return err
	})
	if err != nil {
		t.Fatalf("REQUEST to port 4011: %v", err)
	}
	return reply
}

// exchange sends req until a reply with its transaction ID arrives.
func exchange(conn *net.UDPConn, req *dhcpv4.DHCPv4, to *net.UDPAddr) (*dhcpv4.DHCPv4, error) {
	buf := make([]byte, 1500)
	for range 10 {
		if _, err := conn.WriteTo(req.ToBytes(), to); err != nil {
			return nil, err
		}
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			continue // the server may still be starting
		}
		reply, err := dhcpv4.FromBytes(buf[:n])
		if err == nil && reply.TransactionID == req.TransactionID {
			return reply, nil
		}
	}
	return nil, errors.New("no reply")
}

func TestNetnsFullDHCP(t *testing.T) {
	l := newLab(t, "full")
	cfg := fullConfig(&fakeClock{})
	cfg.Now = nil // real clock
	cfg.Stats = &servestats.Counter{}
	scrape := metricstest.Serve(t, metrics.New(metrics.Sources{Served: func() map[string]servestats.Snapshot {
		return map[string]servestats.Snapshot{"dhcp": cfg.Stats.Snapshot()}
	}}))
	l.serve(t, cfg)
	ctx := t.Context()

	var first, second *nclient4.Lease
	err := l.client(t, 300*time.Millisecond, 8, func(c *nclient4.Client) (err error) {
		if first, err = c.Request(ctx, pxeEFI...); err != nil {
			return err
		}
		second, err = c.Request(ctx, ipxeEFIRFC3004...)
		return err
	})
	if err != nil {
		t.Fatalf("DORA: %v", err)
	}
	ack := first.ACK
	if !ack.YourIPAddr.Equal(net.IPv4(192, 0, 2, 100)) || ack.BootFileName != "ipxe.efi" ||
		!ack.ServerIPAddr.Equal(serverIP.AsSlice()) || ack.IPAddressLeaseTime(0) != 10*time.Minute {
		t.Errorf("firmware PXE ACK = %s", ack.Summary())
	}
	if !second.ACK.YourIPAddr.Equal(ack.YourIPAddr) || second.ACK.BootFileName != efiURL {
		t.Errorf("iPXE ACK = %s, want same address and script URL", second.ACK.Summary())
	}
	// Two DORAs: at least four replies (OFFER, ACK each) and their bytes,
	// counted on the real metrics endpoint.
	body := scrape()
	if v := metricstest.Sample(body, `sealroot_served_requests_total{result="reply",service="dhcp"}`); v < 4 {
		t.Errorf("dhcp replies on /metrics = %v, want at least 4", v)
	}
	if v := metricstest.Sample(body, `sealroot_served_bytes_total{direction="received",service="dhcp"}`); v < 4*240 {
		t.Errorf("dhcp bytes received on /metrics = %v, want at least four BOOTP packets", v)
	}
}

// TestNetnsHTTPBoot runs real DHCP exchanges of a UEFI HTTP boot client
// (vendor class "HTTPClient", arch 16, as OVMF's HttpBootDxe sends them)
// against both modes over a veth pair: the offer and the ACK carry the
// artifact's URL and echo the class.
func TestNetnsHTTPBoot(t *testing.T) {
	const path = "/artifacts/sealroot-signed.efi"
	t.Run("proxy", func(t *testing.T) {
		l := newLab(t, "httpp")
		l.serve(t, Config{Mode: ModeProxy, HTTPPort: 8080, HTTPBootPath: path})
		var offer *dhcpv4.DHCPv4
		err := l.client(t, 300*time.Millisecond, 8, func(c *nclient4.Client) (err error) {
			offer, err = c.DiscoverOffer(t.Context(), httpEFI...)
			return err
		})
		if err != nil {
			t.Fatalf("HTTP boot DISCOVER: %v", err)
		}
		if offer.BootFileName != httpBootURL || offer.ClassIdentifier() != "HTTPClient" || !offer.YourIPAddr.IsUnspecified() {
			t.Errorf("proxy offer = %s, want %s, class HTTPClient, no address", offer.Summary(), httpBootURL)
		}
	})
	t.Run("full", func(t *testing.T) {
		l := newLab(t, "httpf")
		cfg := fullConfig(&fakeClock{})
		cfg.Now = nil
		cfg.HTTPBootPath = path
		l.serve(t, cfg)
		var lease *nclient4.Lease
		err := l.client(t, 300*time.Millisecond, 8, func(c *nclient4.Client) (err error) {
			lease, err = c.Request(t.Context(), httpEFI...)
			return err
		})
		if err != nil {
			t.Fatalf("HTTP boot DORA: %v", err)
		}
		for _, m := range []*dhcpv4.DHCPv4{lease.Offer, lease.ACK} {
			if m.BootFileName != httpBootURL || m.ClassIdentifier() != "HTTPClient" ||
				string(m.Options.Get(dhcpv4.OptionBootfileName)) != httpBootURL || m.YourIPAddr.IsUnspecified() {
				t.Errorf("%v = %s, want a lease with %s and class HTTPClient", m.MessageType(), m.Summary(), httpBootURL)
			}
		}
	})
}
