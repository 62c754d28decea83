package netup

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/vishvananda/netlink"
)

// testServer is a minimal DHCP server: one address, a router and DNS; it
// counts renewals and can NAK them.
type testServer struct {
	mu       sync.Mutex
	renewals int
	nakRenew bool
	yiaddr   net.IP
}

var (
	serverIP = net.IPv4(10, 77, 0, 1).To4()
	leaseFor = 10 * time.Minute
)

func (s *testServer) handle(conn net.PacketConn, _ net.Addr, m *dhcpv4.DHCPv4) {
	s.mu.Lock()
	defer s.mu.Unlock()
	typ := dhcpv4.MessageTypeOffer
	if m.MessageType() == dhcpv4.MessageTypeRequest {
		typ = dhcpv4.MessageTypeAck
		if !m.ClientIPAddr.IsUnspecified() {
			s.renewals++
			if s.nakRenew {
				typ = dhcpv4.MessageTypeNak
			}
		}
	}
	reply, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(s.yiaddr),
		dhcpv4.WithServerIP(serverIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(serverIP),
		dhcpv4.WithDNS(net.IPv4(10, 77, 0, 53)),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(leaseFor)),
	)
	if err != nil {
		return
	}
	if typ == dhcpv4.MessageTypeNak {
		reply.YourIPAddr = net.IPv4zero
	}
	conn.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
}

// TestUpInNetns runs the real client against a real DHCP server across a
// veth pair between two namespaces the test owns.
func TestUpInNetns(t *testing.T) {
	netnstest.RequireRoot(t)
	srvNS := netnstest.New(t, "sr-netup-srv")
	cliNS := netnstest.New(t, "sr-netup-cli")
	if err := srvNS.AddVeth("srv0", "", cliNS, "cli0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{yiaddr: net.IPv4(10, 77, 0, 50).To4()}
	var srv *server4.Server
	err := srvNS.Do(func() error {
		l, err := netlink.LinkByName("srv0")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: serverIP, Mask: net.CIDRMask(24, 32)}}); err != nil {
			return err
		}
		srv, err = server4.NewServer("srv0", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, ts.handle)
		return err
	})
	if err != nil {
		t.Fatalf("DHCP server: %v", err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })

	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = cliNS.Do(func() error {
		lease, err := Up(ctx, Config{Interface: "cli0", ResolvConf: resolv, LinkTimeout: 5 * time.Second,
			AttemptTimeout: 3 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		if err != nil {
			return err
		}
		defer lease.Close()
		if err := checkConfigured("10.77.0.50/24"); err != nil {
			return fmt.Errorf("after Up: %w", err)
		}
		// A renewal reaches the server and keeps the address.
		if err := lease.Renew(ctx); err != nil {
			return fmt.Errorf("Renew() = %w", err)
		}
		// After a NAK the client starts over and moves to the new address.
		ts.mu.Lock()
		ts.nakRenew, ts.yiaddr = true, net.IPv4(10, 77, 0, 60).To4()
		ts.mu.Unlock()
		if err := lease.Renew(ctx); err != nil {
			return fmt.Errorf("Renew() after NAK = %w", err)
		}
		if got := lease.Addr(); got != "10.77.0.60/24" {
			return fmt.Errorf("address after NAK and new lease = %s, want 10.77.0.60/24", got)
		}
		return checkConfigured("10.77.0.60/24")
	})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.renewals != 2 {
		t.Errorf("server saw %d renewals, want 2", ts.renewals)
	}
	rc, err := os.ReadFile(resolv)
	if err != nil || !strings.Contains(string(rc), "nameserver 10.77.0.53\n") {
		t.Errorf("resolv.conf = %q, %v", rc, err)
	}
}

// checkConfigured checks, in the client namespace, that cli0 has exactly
// the address want with a finite lifetime, and a default route via the
// server. It returns an error instead of calling t.Fatal: it runs on a
// namespace thread, not the test goroutine.
func checkConfigured(want string) error {
	l, err := netlink.LinkByName("cli0")
	if err != nil {
		return err
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != want {
		return fmt.Errorf("cli0 addresses = %v, want only %s", addrs, want)
	}
	if lft := addrs[0].ValidLft; lft <= 0 || lft > int(leaseFor/time.Second) {
		return fmt.Errorf("valid lifetime = %ds, want within the %v lease", lft, leaseFor)
	}
	routes, err := netlink.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(serverIP) {
			return nil
		}
	}
	return fmt.Errorf("no default route via %s in %v", serverIP, routes)
}
