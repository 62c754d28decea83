package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/sealroot/sealroot/server/store"
)

// dbLeases is the server's LeaseStore over the state store (as package
// server wires it, boot.StoreLeases, which this package cannot import):
// bbolt, or etcd shared by several servers.
type dbLeases struct{ db store.DHCPStore }

func (d dbLeases) UpdateLeases(ctx context.Context, fn func([]Lease) ([]Lease, error)) error {
	return d.db.UpdateDHCPLeases(ctx, func(stored []store.DHCPLease) ([]store.DHCPLease, error) {
		ls := make([]Lease, len(stored))
		for i, l := range stored {
			ls[i] = Lease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry}
		}
		puts, err := fn(ls)
		out := make([]store.DHCPLease, len(puts))
		for i, l := range puts {
			out[i] = store.DHCPLease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry}
		}
		return out, err
	})
}

func (d dbLeases) Reservations(ctx context.Context) ([]Reservation, error) {
	rs, err := d.db.DHCPReservations(ctx)
	out := make([]Reservation, len(rs))
	for i, r := range rs {
		out[i] = Reservation{MAC: r.MAC, Addr: r.Addr}
	}
	return out, err
}

// start runs a server in the server namespace; stop ends it.
func (l *lab) start(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	cfg.Interface, cfg.ServerIP = "srv0", serverIP
	s, err := New(cfg, hclog.New(&hclog.LoggerOptions{Output: logWriter{t}, Level: hclog.Debug}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.srv.Do(func() error { return s.Serve(ctx) }) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	}
}

// lease runs DORA from cl0 as the client with hardware address mac.
func (l *lab) lease(t *testing.T, mac string) (netip.Addr, error) { return l.leaseTries(t, mac, 8) }

func (l *lab) leaseTries(t *testing.T, mac string, tries int) (netip.Addr, error) {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	var got netip.Addr
	err := l.cli.Do(func() error {
		c, err := nclient4.New("cl0", nclient4.WithTimeout(300*time.Millisecond), nclient4.WithRetry(tries), nclient4.WithHWAddr(hw))
		if err != nil {
			return err
		}
		defer c.Close()
		ls, err := c.Request(t.Context(), plainClient...)
		if err != nil {
			return err
		}
		got, _ = addrOf(ls.ACK.YourIPAddr)
		return nil
	})
	return got, err
}

// The failure of issue 16: a lease held across a server restart is not
// offered to a second machine. Also: reservations, and an address some
// host answers ARP for is not offered.
func TestNetnsLeasesSurviveRestart(t *testing.T) {
	l := newLab(t, "persist")
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := fullConfig(&fakeClock{})
	cfg.Now, cfg.Pool.LeaseTime, cfg.Leases = nil, time.Hour, dbLeases{db}

	stop := l.start(t, cfg)
	a, err := l.lease(t, "52:54:00:00:00:0a")
	stop()
	if err != nil {
		t.Fatalf("first client: %v", err)
	}
	stop = l.start(t, cfg) // restarted: only the store remembers
	b, err := l.lease(t, "52:54:00:00:00:0b")
	if err != nil {
		t.Fatalf("second client after restart: %v", err)
	}
	if a == b {
		t.Fatalf("after a restart the second client got %v, which the first still holds", b)
	}
	if again, err := l.lease(t, "52:54:00:00:00:0a"); err != nil || again != a {
		t.Fatalf("first client again = %v, %v; want its address %v", again, err, a)
	}

	reserved := netip.MustParseAddr("192.0.2.150")
	if _, err := db.Reserve(t.Context(), store.DHCPReservation{MAC: "52:54:00:00:00:0c", Addr: reserved}); err != nil {
		t.Fatal(err)
	}
	if got, err := l.lease(t, "52:54:00:00:00:0c"); err != nil || got != reserved {
		t.Fatalf("reserved client = %v, %v; want %v", got, err, reserved)
	}
	stop()

	// The one free address in the pool answers ARP (cl0 holds it): a
	// server that probes does not offer it.
	var free netip.Addr
	for _, c := range []string{"192.0.2.100", "192.0.2.101", "192.0.2.102"} {
		if x := netip.MustParseAddr(c); x != a && x != b {
			free = x
		}
	}
	err = l.cli.Do(func() error {
		link, err := netlink.LinkByName("cl0")
		if err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr(free.String() + "/24")
		return netlink.AddrReplace(link, addr)
	})
	if err != nil {
		t.Fatal(err)
	}
	var prober *ARPProber
	if err := l.srv.Do(func() (err error) { prober, err = NewARPProber("srv0", 0); return err }); err != nil {
		t.Fatal(err)
	}
	defer prober.Close()
	cfg.Probe = prober.Probe
	stop = l.start(t, cfg)
	defer stop()
	got, err := l.leaseTries(t, "52:54:00:00:00:0d", 3)
	if err == nil && got == free {
		t.Fatalf("offered %v, which another host answers ARP for", got)
	}
	t.Logf("client with the only free address taken: %v, %v (want no lease)", got, err)
	if leases, _ := db.DHCPLeases(t.Context()); !hasQuarantined(leases, free) {
		t.Fatalf("stored leases %+v: want %v quarantined", leases, free)
	}
}

func hasQuarantined(ls []store.DHCPLease, a netip.Addr) bool {
	for _, l := range ls {
		if l.Addr == a && l.MAC == "" {
			return true
		}
	}
	return false
}

// BenchmarkRespondFullRequest measures a REQUEST (renewal) that is ACKed:
// in memory, and written to the state store (bbolt commit with fsync).
// Compare the two: the store's cost per ACK.
func BenchmarkRespondFullRequest(b *testing.B) {
	for _, stored := range []bool{false, true} {
		b.Run(fmt.Sprintf("stored=%v", stored), func(b *testing.B) {
			cfg := fullConfig(&fakeClock{time.Unix(1e9, 0)})
			if stored {
				db, err := store.Open(filepath.Join(b.TempDir(), "state.db"), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				cfg.Leases = dbLeases{db}
			}
			s := newTestServer(b, cfg)
			req := newMsg(b, dhcpv4.MessageTypeRequest, mac1, append(plainClient[:len(plainClient):len(plainClient)],
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 100))))...)
			b.ReportAllocs()
			for b.Loop() {
				reply, err := s.Respond(context.Background(), req, PortDHCP)
				if err != nil || reply.MessageType() != dhcpv4.MessageTypeAck {
					b.Fatalf("reply %v, %v", reply, err)
				}
			}
		})
	}
}
