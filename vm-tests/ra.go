package vmtest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// raInterval is how often ServeRouterAdvertisements announces.
const raInterval = 500 * time.Millisecond

// ServeRouterAdvertisements multicasts IPv6 router advertisements without
// flags, prefixes or default route on the lab bridge until t ends.
//
// iPXE's autoboot configures IPv6 next to DHCPv4 and waits (about 16 s under
// TCG) for a router before it continues; an advertisement with neither the
// managed nor the other-config flag ends that wait at once.
func (l *Lab) ServeRouterAdvertisements(t testing.TB) {
	t.Helper()
	var c *icmp.PacketConn
	err := l.Do(func() (err error) {
		c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	})
	if err != nil {
		t.Fatalf("vmtest: icmpv6 listen: %v", err)
	}
	ifi, err := l.interfaceIndex()
	if err != nil {
		c.Close()
		t.Fatalf("vmtest: %v", err)
	}
	p := c.IPv6PacketConn()
	p.SetMulticastHopLimit(255) // RFC 4861: receivers drop NDP with hop limit < 255
	p.SetMulticastInterface(&net.Interface{Index: ifi})
	ra, _ := (&icmp.Message{
		Type: ipv6.ICMPTypeRouterAdvertisement,
		// cur hop limit 64, no M/O flags, router lifetime 0 (not a default
		// router), reachable time and retrans timer unspecified.
		Body: &icmp.RawBody{Data: []byte{64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
	}).Marshal(nil) // the kernel fills in the checksum
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: l.Bridge}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(raInterval)
		defer tick.Stop()
		for {
			// Fails until the bridge has a link-local address; retried.
			c.WriteTo(ra, dst)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		c.Close()
	})
}

func (l *Lab) interfaceIndex() (int, error) {
	var idx int
	err := l.Do(func() error {
		ifi, err := net.InterfaceByName(l.Bridge)
		if err != nil {
			return fmt.Errorf("interface %s: %w", l.Bridge, err)
		}
		idx = ifi.Index
		return nil
	})
	return idx, err
}
