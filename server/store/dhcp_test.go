package store

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// claimLowest is a lease allocator as the DHCP pool decides: mac keeps its
// address if it has one, else takes the lowest address of first..first+n-1
// without a record. It reports the address it decided on in *got.
func claimLowest(mac string, first netip.Addr, n int, expiry time.Time, got *netip.Addr) func([]DHCPLease) ([]DHCPLease, error) {
	return func(ls []DHCPLease) ([]DHCPLease, error) {
		taken := map[netip.Addr]bool{}
		for _, l := range ls {
			if l.MAC == mac {
				*got = l.Addr
				return nil, nil
			}
			taken[l.Addr] = true
		}
		a := first
		for range n {
			if !taken[a] {
				*got = a
				return []DHCPLease{{MAC: mac, Addr: a, Expiry: expiry}}, nil
			}
			a = a.Next()
		}
		return nil, errors.New("pool exhausted")
	}
}

// Allocators racing for the same free address (as two DHCP servers on
// one etcd, each with its own goroutines): every MAC ends up with the
// address its allocator decided on, and no address with two MACs. A
// store that recorded the decisions with blind writes (PutDHCPLease after
// a separate read, as the per-server pools did) gives the lowest address
// to several MACs.
func TestDHCPLeaseRace(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		ctx := t.Context()
		first := netip.MustParseAddr("192.0.2.100")
		const n = 8
		expiry := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		got := make([]netip.Addr, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = st.UpdateDHCPLeases(ctx, claimLowest(fmt.Sprintf("52:54:00:00:00:%02x", i), first, n, expiry, &got[i]))
			}()
		}
		close(start)
		wg.Wait()
		byAddr := map[netip.Addr]int{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("allocator %d: %v", i, errs[i])
			}
			if j, dup := byAddr[got[i]]; dup {
				t.Fatalf("allocators %d and %d both decided on %v", j, i, got[i])
			}
			byAddr[got[i]] = i
		}
		ls, err := st.DHCPLeases(ctx)
		if err != nil || len(ls) != n {
			t.Fatalf("DHCPLeases = %d leases, %v; want %d", len(ls), err, n)
		}
		for _, l := range ls {
			if want := fmt.Sprintf("52:54:00:00:00:%02x", byAddr[l.Addr]); l.MAC != want {
				t.Errorf("stored %v -> %s, but the allocator of %s decided on it", l.Addr, l.MAC, want)
			}
		}
	})
}

// One MAC, two allocators deciding on two different addresses at once
// (two servers each answering the same client's DISCOVER): the MAC holds
// one address afterwards.
func TestDHCPLeaseOneAddressPerMAC(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		ctx := t.Context()
		const mac = "52:54:00:00:00:01"
		expiry := time.Now().Add(time.Hour).UTC()
		for round := range 20 {
			var wg sync.WaitGroup
			for i := range 2 {
				a := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + 2*round + i)})
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := st.UpdateDHCPLeases(ctx, func([]DHCPLease) ([]DHCPLease, error) {
						return []DHCPLease{{MAC: mac, Addr: a, Expiry: expiry}}, nil
					})
					if err != nil {
						t.Errorf("UpdateDHCPLeases: %v", err)
					}
				}()
			}
			wg.Wait()
			ls, err := st.DHCPLeases(ctx)
			if err != nil || len(ls) != 1 || ls[0].MAC != mac {
				t.Fatalf("round %d: DHCPLeases = %+v, %v; want one lease of %s", round, ls, err, mac)
			}
		}
	})
}

func TestDHCPLeaseUpdateErrorWritesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		ctx := t.Context()
		bad := errors.New("refused")
		err := st.UpdateDHCPLeases(ctx, func([]DHCPLease) ([]DHCPLease, error) {
			return []DHCPLease{{MAC: "m", Addr: netip.MustParseAddr("192.0.2.1")}}, bad
		})
		if !errors.Is(err, bad) {
			t.Fatalf("UpdateDHCPLeases = %v, want fn's error", err)
		}
		err = st.UpdateDHCPLeases(ctx, func([]DHCPLease) ([]DHCPLease, error) {
			return []DHCPLease{{MAC: "m", Addr: netip.MustParseAddr("2001:db8::1")}}, nil
		})
		if !errors.Is(err, ErrBadReservation) {
			t.Fatalf("UpdateDHCPLeases(IPv6) = %v, want ErrBadReservation", err)
		}
		if ls, err := st.DHCPLeases(ctx); err != nil || len(ls) != 0 {
			t.Fatalf("DHCPLeases = %+v, %v; want none", ls, err)
		}
	})
}

// A decision that writes nothing (a DISCOVER or a REQUEST of a lease
// still held) succeeds and leaves the leases as they were.
func TestDHCPLeaseUpdateWithoutPuts(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		ctx := t.Context()
		l := DHCPLease{MAC: "52:54:00:00:00:01", Addr: netip.MustParseAddr("192.0.2.10"), Expiry: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
		if err := st.UpdateDHCPLeases(ctx, func([]DHCPLease) ([]DHCPLease, error) { return []DHCPLease{l}, nil }); err != nil {
			t.Fatal(err)
		}
		var seen int
		err := st.UpdateDHCPLeases(ctx, func(ls []DHCPLease) ([]DHCPLease, error) {
			seen = len(ls)
			return nil, nil
		})
		if err != nil || seen != 1 {
			t.Fatalf("UpdateDHCPLeases without puts = %v (saw %d leases); want nil, 1", err, seen)
		}
		if ls, err := st.DHCPLeases(ctx); err != nil || len(ls) != 1 || ls[0].Addr != l.Addr || ls[0].MAC != l.MAC {
			t.Fatalf("DHCPLeases = %+v, %v; want %+v", ls, err, l)
		}
	})
}
