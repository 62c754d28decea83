package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/test/netnstest"
)

// twoServerLab is one lab segment (a bridge in the hub namespace) with two
// full-DHCP servers, each in its own namespace (srv0 at 192.0.2.1 and
// 192.0.2.2), and a client namespace (cl0).
type twoServerLab struct {
	hub, cli *netnstest.NS
	srv      [2]*netnstest.NS
}

func newTwoServerLab(t *testing.T) *twoServerLab {
	t.Helper()
	netnstest.RequireRoot(t)
	suffix := fmt.Sprintf("%d", os.Getpid())
	l := &twoServerLab{
		hub: netnstest.New(t, "sr-dhcph-"+suffix),
		cli: netnstest.New(t, "sr-dhcpc2-"+suffix),
	}
	if err := l.hub.AddBridge("br0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if err := l.hub.AddVeth("hcl", "br0", l.cli, "cl0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	for i := range l.srv {
		l.srv[i] = netnstest.New(t, fmt.Sprintf("sr-dhcps%d-%s", i, suffix))
		addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)}), 24)
		if err := l.hub.AddVeth(fmt.Sprintf("hs%d", i), "br0", l.srv[i], "srv0", addr); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// serve runs a full-DHCP server in server i's namespace on st until the
// test ends.
func (l *twoServerLab) serve(t *testing.T, i int, st LeaseStore) {
	t.Helper()
	cfg := fullConfig(&fakeClock{})
	cfg.Now, cfg.Leases = nil, st
	cfg.Pool.End = netip.MustParseAddr("192.0.2.109")
	cfg.Interface, cfg.ServerIP = "srv0", netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)})
	logger := hclog.New(&hclog.LoggerOptions{Output: logWriter{t}, Level: hclog.Debug, Name: fmt.Sprintf("server%d", i)})
	s, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.srv[i].Do(func() error { return s.Serve(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	})
}

// reach connects only the servers in on to the segment (the others' hub
// ports go down): a server that does not see a client's packets, as on a
// segment it does not serve, or after a lost packet.
func (l *twoServerLab) reach(t *testing.T, on ...int) {
	t.Helper()
	err := l.hub.Do(func() error {
		for i := range l.srv {
			link, err := netlink.LinkByName(fmt.Sprintf("hs%d", i))
			if err != nil {
				return err
			}
			up := false
			for _, j := range on {
				up = up || i == j
			}
			if up {
				err = netlink.LinkSetUp(link)
			} else {
				err = netlink.LinkSetDown(link)
			}
			if err != nil {
				return fmt.Errorf("link %s: %w", link.Attrs().Name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// lease runs DORA from cl0 as mac; the ACK's server and address.
func (l *twoServerLab) lease(t *testing.T, mac string) (server, addr netip.Addr, err error) {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	err = l.cli.Do(func() error {
		c, err := nclient4.New("cl0", nclient4.WithTimeout(500*time.Millisecond), nclient4.WithRetry(8), nclient4.WithHWAddr(hw))
		if err != nil {
			return err
		}
		defer c.Close()
		ls, err := c.Request(t.Context(), plainClient...)
		if err != nil {
			return err
		}
		server, _ = addrOf(ls.ACK.ServerIdentifier())
		addr, _ = addrOf(ls.ACK.YourIPAddr)
		return nil
	})
	return server, addr, err
}

// Two DHCP servers share their leases through one etcd: real clients get
// distinct addresses whichever server answers them, each server deciding
// in an etcd transaction. With a pool per server (the leases read from
// the store once, at start, and written blindly), the server that did not
// see the first client's exchange gives the second client the same
// address.
func TestNetnsTwoServersShareLeases(t *testing.T) {
	l := newTwoServerLab(t)
	c := etcdtest.Start(t, 1)
	for i := range l.srv {
		st, err := store.NewEtcd(context.Background(), c.Client(), etcdtest.Prefix(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		l.serve(t, i, dbLeases{st})
	}
	st, err := store.NewEtcd(context.Background(), c.Client(), etcdtest.Prefix(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	holder := map[netip.Addr]string{}
	check := func(mac string, server, a netip.Addr) {
		t.Helper()
		t.Logf("%s: %v from server %v", mac, a, server)
		if other, ok := holder[a]; ok && other != mac {
			t.Fatalf("%v given to %s and to %s", a, other, mac)
		}
		holder[a] = mac
	}
	// Each client reaches one server only, alternately.
	for i := range 4 {
		l.reach(t, i%2)
		mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
		server, a, err := l.lease(t, mac)
		if err != nil {
			t.Fatalf("%s through server %d: %v", mac, i%2, err)
		}
		if want := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%2)}); server != want {
			t.Fatalf("%s ACKed by %v, want %v (the only one reachable)", mac, server, want)
		}
		check(mac, server, a)
	}

	// Both reachable: four clients at once, both servers answer each.
	l.reach(t, 0, 1)
	type result struct {
		mac       string
		server, a netip.Addr
		err       error
	}
	results := make([]result, 4)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.mac = fmt.Sprintf("52:54:00:00:02:%02x", i)
			r.server, r.a, r.err = l.lease(t, r.mac)
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("%s: %v", r.mac, r.err)
		}
		check(r.mac, r.server, r.a)
	}

	// A client that returns gets its own address back from the other
	// server.
	l.reach(t, 1)
	if _, a, err := l.lease(t, "52:54:00:00:01:00"); err != nil || holder[a] != "52:54:00:00:01:00" {
		t.Fatalf("first client again through server 1 = %v, %v; want its address", a, err)
	}

	// The store holds one record per address and per MAC.
	ls, err := st.DHCPLeases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	macs := map[string]netip.Addr{}
	for _, r := range ls {
		if a, dup := macs[r.MAC]; dup {
			t.Errorf("%s holds %v and %v", r.MAC, a, r.Addr)
		}
		macs[r.MAC] = r.Addr
		if holder[r.Addr] != r.MAC {
			t.Errorf("stored %v -> %s, clients were told %s", r.Addr, r.MAC, holder[r.Addr])
		}
	}
	if len(ls) != 8 {
		t.Errorf("stored %d leases, want 8: %+v", len(ls), ls)
	}
}
