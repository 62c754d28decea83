package dhcp

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/sealroot/sealroot/server/store"
)

// dora runs DISCOVER, OFFER, REQUEST, ACK for mac and returns the address.
func dora(t *testing.T, s *Server, mac net.HardwareAddr) net.IP {
	t.Helper()
	offer, err := s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeDiscover, mac, pxeEFI...), PortDHCP)
	if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER %v: %v, %v", mac, offer, err)
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, pxeEFI...)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := s.Respond(context.Background(), req, PortDHCP)
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("REQUEST %v: %v, %v", offer.YourIPAddr, ack, err)
	}
	if ack.BootFileName != "ipxe.efi" {
		t.Errorf("ACK boot file = %q, want ipxe.efi", ack.BootFileName)
	}
	return ack.YourIPAddr
}

func request(t *testing.T, s *Server, mac net.HardwareAddr, ip net.IP, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	t.Helper()
	mods = append([]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))}, mods...)
	return s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeRequest, mac, mods...), PortDHCP)
}

func TestLeaseLifecycle(t *testing.T) {
	forEachLeases(t, func(t *testing.T, leases LeaseStore) {
		clock := &fakeClock{time.Unix(1e9, 0)}
		s := newTestServer(t, withLeases(fullConfig(clock), leases))
		a1 := dora(t, s, mac1)
		a2 := dora(t, s, mac2)
		if a1.Equal(a2) {
			t.Fatalf("two clients got %v", a1)
		}
		t.Run("stable_per_mac", func(t *testing.T) {
			if again := dora(t, s, mac1); !again.Equal(a1) {
				t.Errorf("mac1 again got %v, want %v", again, a1)
			}
		})
		t.Run("nak_for_address_of_other_client", func(t *testing.T) {
			reply, err := request(t, s, mac3, a1)
			if err != nil || reply.MessageType() != dhcpv4.MessageTypeNak {
				t.Errorf("REQUEST other's address = %v, %v; want NAK", reply, err)
			}
		})
		t.Run("nak_outside_range", func(t *testing.T) {
			reply, err := request(t, s, mac1, net.IPv4(10, 0, 0, 1))
			if err != nil || reply.MessageType() != dhcpv4.MessageTypeNak {
				t.Errorf("REQUEST outside = %v, %v; want NAK", reply, err)
			}
		})
		t.Run("other_server_selected", func(t *testing.T) {
			_, err := request(t, s, mac1, a1, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 9))))
			if !errors.Is(err, ErrIgnored) {
				t.Errorf("REQUEST for other server: err = %v, want ErrIgnored", err)
			}
		})
		t.Run("request_without_address", func(t *testing.T) {
			_, err := s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeRequest, mac1), PortDHCP)
			if !errors.Is(err, ErrIgnored) {
				t.Errorf("REQUEST without address: err = %v, want ErrIgnored", err)
			}
		})
		t.Run("renew_by_ciaddr", func(t *testing.T) {
			m := newMsg(t, dhcpv4.MessageTypeRequest, mac1, dhcpv4.WithClientIP(a1))
			reply, err := s.Respond(context.Background(), m, PortDHCP)
			if err != nil || reply.MessageType() != dhcpv4.MessageTypeAck || !reply.YourIPAddr.Equal(a1) {
				t.Errorf("renew = %v, %v", reply, err)
			}
		})
		t.Run("release_keeps_address_for_mac", func(t *testing.T) {
			rel := newMsg(t, dhcpv4.MessageTypeRelease, mac1, dhcpv4.WithClientIP(a1))
			if reply, err := s.Respond(context.Background(), rel, PortDHCP); reply != nil || err != nil {
				t.Fatalf("RELEASE = %v, %v; want no reply", reply, err)
			}
			clock.t = clock.t.Add(time.Second)
			if again := dora(t, s, mac1); !again.Equal(a1) {
				t.Errorf("after release mac1 got %v, want %v", again, a1)
			}
		})
	})
}

func TestPoolExhaustionAndReuse(t *testing.T) {
	forEachLeases(t, func(t *testing.T, leases LeaseStore) {
		clock := &fakeClock{time.Unix(1e9, 0)}
		s := newTestServer(t, withLeases(fullConfig(clock), leases)) // 3 addresses
		for _, m := range []net.HardwareAddr{mac1, mac2, mac3} {
			dora(t, s, m)
		}
		mac4 := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 4}
		_, err := s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeDiscover, mac4, pxeEFI...), PortDHCP)
		if !errors.Is(err, ErrPoolExhausted) {
			t.Fatalf("4th client: err = %v, want ErrPoolExhausted", err)
		}
		// mac2 releases; mac4 gets the released address at once.
		a2 := dora(t, s, mac2)
		s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeRelease, mac2, dhcpv4.WithClientIP(a2)), PortDHCP)
		clock.t = clock.t.Add(time.Second)
		if got := dora(t, s, mac4); !got.Equal(a2) {
			t.Errorf("mac4 got %v, want released %v", got, a2)
		}
		// After all leases expire, mac2 returns and takes the oldest one.
		clock.t = clock.t.Add(time.Hour)
		if got := dora(t, s, mac2); got == nil {
			t.Errorf("mac2 got no address after expiry")
		}
	})
}

func TestOfferHoldExpires(t *testing.T) {
	forEachLeases(t, func(t *testing.T, leases LeaseStore) {
		clock := &fakeClock{time.Unix(1e9, 0)}
		cfg := fullConfig(clock)
		cfg.Pool.End = cfg.Pool.Start // one address
		s := newTestServer(t, withLeases(cfg, leases))
		if _, err := s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeDiscover, mac1, plainClient...), PortDHCP); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeDiscover, mac2, plainClient...), PortDHCP); !errors.Is(err, ErrPoolExhausted) {
			t.Fatalf("during offer hold: err = %v, want ErrPoolExhausted", err)
		}
		clock.t = clock.t.Add(OfferHold + time.Second)
		if got := dora(t, s, mac2); !got.Equal(net.IPv4(192, 0, 2, 100)) {
			t.Errorf("after hold mac2 got %v", got)
		}
	})
}

func TestDeclineQuarantines(t *testing.T) {
	forEachLeases(t, func(t *testing.T, leases LeaseStore) {
		clock := &fakeClock{time.Unix(1e9, 0)}
		s := newTestServer(t, withLeases(fullConfig(clock), leases))
		a1 := dora(t, s, mac1)
		dec := newMsg(t, dhcpv4.MessageTypeDecline, mac1, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a1)))
		if reply, err := s.Respond(context.Background(), dec, PortDHCP); reply != nil || err != nil {
			t.Fatalf("DECLINE = %v, %v", reply, err)
		}
		if got := dora(t, s, mac1); got.Equal(a1) {
			t.Errorf("after DECLINE mac1 got the declined %v again", got)
		}
		if reply, _ := request(t, s, mac2, a1); reply.MessageType() != dhcpv4.MessageTypeNak {
			t.Errorf("declined address handed out: %v", reply.MessageType())
		}
	})
}

func TestInformFull(t *testing.T) {
	s := newTestServer(t, fullConfig(&fakeClock{time.Unix(1e9, 0)}))
	m := newMsg(t, dhcpv4.MessageTypeInform, mac1, append(pxeBIOS[:2:2], dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 5)))...)
	reply, err := s.Respond(context.Background(), m, PortDHCP)
	if err != nil || reply.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("INFORM = %v, %v", reply, err)
	}
	if !reply.YourIPAddr.IsUnspecified() || reply.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || reply.BootFileName != "undionly.kpxe" {
		t.Errorf("INFORM ACK = %v", reply.Summary())
	}
}

// forEachLeases runs fn with leases in memory (nil) and in a bbolt state
// store: the single-server store decides as memory does.
func forEachLeases(t *testing.T, fn func(*testing.T, LeaseStore)) {
	t.Run("memory", func(t *testing.T) { fn(t, nil) })
	t.Run("bbolt", func(t *testing.T) {
		db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		fn(t, dbLeases{db})
	})
}

func withLeases(cfg Config, leases LeaseStore) Config {
	cfg.Leases = leases
	return cfg
}
