package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"

	"github.com/sealroot/sealroot/server/boot/udpbuf"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/netnstest"
)

// Found by the full-DHCP boot storm (test/storm, SEALROOT_STORM_DHCP=full):
// each fresh address's probe held the only read loop for its timeout, so
// a room of fresh machines got its offers one probe apart (50 machines:
// 15 s; 1,000: over 5 minutes) and retransmitted meanwhile. A DISCOVER
// whose probe is running must not hold the answer to another client.
func TestNetnsProbeHoldsNoOtherClient(t *testing.T) {
	l := newLab(t, "probe")
	cfg := fullConfig(&fakeClock{})
	cfg.Now = nil
	entered, release := make(chan netip.Addr, 1), make(chan struct{})
	var held netip.Addr
	var first atomic.Bool
	cfg.Probe = func(a netip.Addr) bool {
		if first.CompareAndSwap(false, true) { // the first probe: held until released
			entered <- a
			<-release
		}
		return false
	}
	l.serve(t, cfg)
	firstDone := make(chan error, 1)
	go func() {
		// Retries cover a server still starting; sent again during the
		// probe, the DISCOVER is not answered until the probe ends.
		firstDone <- l.client(t, 2*time.Second, 15, func(c *nclient4.Client) error {
			_, err := c.Request(t.Context(), pxeBIOS...)
			return err
		})
	}()
	select {
	case held = <-entered:
	case err := <-firstDone:
		t.Fatalf("first client done before its probe: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("first client's address never probed")
	}
	t.Logf("first client's address %v held in its probe", held)
	var second *nclient4.Lease
	err := l.cli.Do(func() error {
		c, err := nclient4.New("cl0", nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3), nclient4.WithHWAddr(mac2))
		if err != nil {
			return err
		}
		defer c.Close()
		second, err = c.Request(t.Context(), pxeBIOS...)
		return err
	})
	close(release)
	if err != nil {
		t.Fatalf("second client while the first one's probe runs: %v (want its lease)", err)
	}
	if got, _ := addrOf(second.ACK.YourIPAddr); got == held {
		t.Fatalf("second client leased %v, the first one's offer", got)
	}
	if err := <-firstDone; err != nil {
		t.Fatalf("first client after its probe: %v", err)
	}
}

// A DISCOVER sent again while the first one's address is being probed is
// not answered with that address (the probe has not said it is free).
func TestOfferWaitsForItsProbe(t *testing.T) {
	cfg := fullConfig(&fakeClock{time.Unix(1e9, 0)})
	entered, release := make(chan struct{}), make(chan struct{})
	cfg.Probe = func(netip.Addr) bool {
		close(entered)
		<-release
		return false
	}
	s := newTestServer(t, cfg)
	disc := newMsg(t, dhcpv4.MessageTypeDiscover, mac1, plainClient...)
	type answer struct {
		reply *dhcpv4.DHCPv4
		err   error
	}
	firstDone := make(chan answer, 1)
	go func() {
		r, err := s.Respond(t.Context(), disc, PortDHCP)
		firstDone <- answer{r, err}
	}()
	<-entered
	again, err := s.Respond(t.Context(), disc, PortDHCP)
	if !errors.Is(err, ErrIgnored) {
		t.Errorf("DISCOVER again during the probe = %v, %v; want no answer (ErrIgnored)", again, err)
	}
	close(release)
	a := <-firstDone
	if a.err != nil || a.reply.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("first DISCOVER = %v, %v; want an OFFER after its probe", a.reply, a.err)
	}
	if r, err := s.Respond(t.Context(), disc, PortDHCP); err != nil || r.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER after the probe = %v, %v; want the OFFER", r, err)
	}
}

// Probes of several addresses run at once: a probe an answering host
// ends returns while another one still waits for its timeout.
func TestNetnsARPProbesOverlap(t *testing.T) {
	l := newLab(t, "arp")
	used := netip.MustParseAddr("192.0.2.50")
	err := l.cli.Do(func() error {
		link, err := netlink.LinkByName("cl0")
		if err != nil {
			return err
		}
		return netnstest.AddAddr(link.Attrs().Name, netip.PrefixFrom(used, 24))
	})
	if err != nil {
		t.Fatal(err)
	}
	var p *ARPProber
	if err := l.srv.Do(func() (err error) { p, err = NewARPProber("srv0", 10*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	silent := make(chan bool, 1)
	go func() { silent <- p.Probe(netip.MustParseAddr("192.0.2.77")) }()
	time.Sleep(200 * time.Millisecond) // the silent probe is sent first
	if !p.Probe(used) {
		t.Fatalf("probe of %v, which cl0 has: no answer", used)
	}
	select {
	case got := <-silent:
		t.Fatalf("probe of an unused address ended (%v) before the answered one: probes ran one after the other", got)
	default:
	}
	if <-silent {
		t.Fatal("probe of an unused address answered")
	}
}

// countingLeases counts the lease decisions that write to a real state
// store.
type countingLeases struct {
	dbLeases
	puts int
}

func (c *countingLeases) UpdateLeases(ctx context.Context, fn func([]Lease) ([]Lease, error)) error {
	return c.dbLeases.UpdateLeases(ctx, func(ls []Lease) ([]Lease, error) {
		puts, err := fn(ls)
		if err == nil && len(puts) > 0 {
			c.puts++
		}
		return puts, err
	})
}

// Found by the full-DHCP boot storm: every ACK was a store commit under
// the pool's lock, three per boot (firmware PXE, iPXE, the agent), so a
// storm's REQUESTs and DISCOVERs queued behind the commits. A REQUEST
// whose stored lease still covers most of a lease time is granted the
// rest of it without a write; the client is never told more than the
// store has, so a restarted server keeps the lease as long.
func TestRequestsWithinStoredLeaseWriteNothing(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clock := &fakeClock{time.Unix(1e9, 0)}
	cfg := fullConfig(clock)
	leases := &countingLeases{dbLeases: dbLeases{db}}
	cfg.Leases = leases
	s := newTestServer(t, cfg)
	lease := cfg.Pool.LeaseTime
	ask := func(what string) time.Duration {
		t.Helper()
		req := newMsg(t, dhcpv4.MessageTypeRequest, mac1, append(plainClient[:len(plainClient):len(plainClient)],
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 100))))...)
		reply, err := s.Respond(t.Context(), req, PortDHCP)
		if err != nil || reply.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("%s: %v, %v; want ACK", what, reply, err)
		}
		granted := reply.IPAddressLeaseTime(0)
		stored, err := db.DHCPLeases(t.Context())
		if err != nil || len(stored) != 1 {
			t.Fatalf("stored leases %v, %v", stored, err)
		}
		if end := clock.t.Add(granted); end.After(stored[0].Expiry) {
			t.Fatalf("%s: granted until %v, stored until %v: the client would outlive a restart", what, end, stored[0].Expiry)
		}
		return granted
	}
	if got := ask("first ACK (firmware)"); got != lease || leases.puts != 1 {
		t.Fatalf("first ACK: lease %v, %d writes; want %v, 1", got, leases.puts, lease)
	}
	clock.t = clock.t.Add(3 * time.Second)
	if got := ask("iPXE's ACK 3 s later"); got < lease*7/8 || leases.puts != 1 {
		t.Fatalf("iPXE's ACK 3 s later: lease %v, %d writes; want the stored rest (>= 7/8 lease), still 1 write", got, leases.puts)
	}
	clock.t = clock.t.Add(lease / 4)
	if got := ask("renewal a quarter lease later"); got != lease || leases.puts != 2 {
		t.Fatalf("renewal a quarter lease later: lease %v, %d writes; want %v, 2", got, leases.puts, lease)
	}
}

// Found by the full-DHCP boot storm: the DHCP sockets had the default
// receive buffer (about 200 KiB, a hundred DISCOVERs), so most of a
// room's first DISCOVERs were dropped and waited out the firmware's 4 s
// retransmission. While every handler is busy, the socket holds a room's
// requests: 1,256 DISCOVERs sent at once are all answered.
func TestNetnsDiscoverBurstIsHeld(t *testing.T) {
	l := newLab(t, "burst")
	cfg := fullConfig(&fakeClock{})
	cfg.Now = nil
	cfg.Pool.Subnet = netip.MustParsePrefix("10.99.0.0/16")
	cfg.Pool.Start, cfg.Pool.End = netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.15.254")
	cfg.Pool.Router, cfg.Pool.DNS = netip.Addr{}, nil
	release := make(chan struct{})
	var hold atomic.Bool
	cfg.Probe = func(netip.Addr) bool { // every handler held once hold is set
		if hold.Load() {
			<-release
		}
		return false
	}
	l.serve(t, cfg)
	var c net.PacketConn
	err := l.cli.Do(func() (err error) {
		c, err = server4.NewIPv4UDPConn("cl0", &net.UDPAddr{Port: dhcpv4.ClientPort})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	udpbuf.Grow(c) // the client side holds the OFFERs
	const n = maxHandlers + 1000
	want := map[dhcpv4.TransactionID]bool{}
	// One DISCOVER answered first: the server is serving.
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	buf := make([]byte, 1500)
	warm := newMsg(t, dhcpv4.MessageTypeDiscover, mac1, plainClient...)
	for answered := false; !answered; {
		if _, err := c.WriteTo(warm.ToBytes(), bcast); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			if m, err := dhcpv4.FromBytes(buf[:k]); err == nil && m.TransactionID == warm.TransactionID {
				answered = true
				break
			}
		}
	}
	hold.Store(true)
	for i := range n {
		mac := net.HardwareAddr{0x52, 0x54, 0x01, 0, byte(i >> 8), byte(i)}
		d := newMsg(t, dhcpv4.MessageTypeDiscover, mac, plainClient...)
		want[d.TransactionID] = true
		if _, err := c.WriteTo(d.ToBytes(), bcast); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // all of them queued behind the held handlers
	close(release)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := 0
	for got < n {
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			break
		}
		if m, err := dhcpv4.FromBytes(buf[:k]); err == nil && m.MessageType() == dhcpv4.MessageTypeOffer && want[m.TransactionID] {
			delete(want, m.TransactionID)
			got++
		}
	}
	if got != n {
		t.Fatalf("%d of %d DISCOVERs sent at once answered: the rest were dropped", got, n)
	}
}
