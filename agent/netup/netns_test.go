package netup

import (
	"context"
	"errors"
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
	lease    time.Duration
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
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.lease)),
	)
	if err != nil {
		return
	}
	if typ == dhcpv4.MessageTypeNak {
		reply.YourIPAddr = net.IPv4zero
	}
	conn.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
}

// startServer creates a client and a server namespace joined by a veth
// pair (cli0 - srv0) and serves ts on srv0. It returns the client side.
func startServer(t *testing.T, ts *testServer) *netnstest.NS {
	t.Helper()
	netnstest.RequireRoot(t)
	srvNS := netnstest.New(t, "sr-netup-srv")
	cliNS := netnstest.New(t, "sr-netup-cli")
	if err := srvNS.AddVeth("srv0", "", cliNS, "cli0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
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
	return cliNS
}

func testConfig(resolv string) Config {
	return Config{Interface: "cli0", ResolvConf: resolv, LinkTimeout: 5 * time.Second,
		AttemptTimeout: 3 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
}

// TestUpInNetns runs the real client against a real DHCP server across a
// veth pair between two namespaces the test owns.
func TestUpInNetns(t *testing.T) {
	ts := &testServer{yiaddr: net.IPv4(10, 77, 0, 50).To4(), lease: leaseFor}
	cliNS := startServer(t, ts)
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cliNS.Do(func() error {
		lease, err := Up(ctx, testConfig(resolv))
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

// TestRenewLoopInNetns lets RenewLoop renew a 2-second lease at T1.
func TestRenewLoopInNetns(t *testing.T) {
	ts := &testServer{yiaddr: net.IPv4(10, 77, 0, 50).To4(), lease: 2 * time.Second}
	cliNS := startServer(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	renewed := func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.renewals >= 1
	}
	var loopErr error
	err := cliNS.Do(func() error {
		lease, err := Up(ctx, testConfig(filepath.Join(t.TempDir(), "resolv.conf")))
		if err != nil {
			return err
		}
		defer lease.Close()
		lctx, lcancel := context.WithCancel(ctx)
		go func() {
			for !renewed() && lctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			lcancel()
		}()
		loopErr = lease.RenewLoop(lctx)
		return nil
	})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if !renewed() || ctx.Err() != nil {
		t.Fatalf("no renewal within %v", 20*time.Second)
	}
	if !errors.Is(loopErr, context.Canceled) {
		t.Errorf("RenewLoop() = %v, want context.Canceled", loopErr)
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
