package attest_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/test/netnstest"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/hashicorp/go-hclog"
)

var tunnelPrefix = netip.MustParsePrefix("10.201.0.0/24")

// newTunnel starts a netstack tunnel whose UDP socket lives in a namespace
// of its own, so nothing listens on the host.
func newTunnel(t *testing.T) *tunnel.Tunnel {
	t.Helper()
	ns := netnstest.New(t, "srat-tun")
	var tn *tunnel.Tunnel
	err := ns.Do(func() (err error) {
		tn, err = tunnel.New(tunnel.Config{Prefix: tunnelPrefix, Endpoint: "192.0.2.1:51820", Logger: testenv.Logger(t, "", hclog.Debug)})
		return err
	})
	if err != nil {
		t.Fatalf("tunnel.New: %v", err)
	}
	t.Cleanup(func() { tn.Close() })
	return tn
}

func withTunnels(tn *tunnel.Tunnel, transport string) func(*attest.Config) {
	return func(c *attest.Config) {
		c.Tunnels = tn
		c.RootTransport = transport
		c.Withdraw = roots.New(roots.Config{Tunnel: tn})
	}
}

func wgKey(t *testing.T) []byte {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.PublicKey()
	return pub[:]
}

func TestApprovedMachineGetsTunnel(t *testing.T) {
	tn := newTunnel(t)
	e := newEnv(t, withTunnels(tn, ""))
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-t")
	if len(tn.Peers()) != 0 {
		t.Fatalf("peers before release = %v, want none", tn.Peers())
	}
	key := wgKey(t)
	res, err := attestOnce(t, e.client(t, m.dev, func(c *agentattest.Config) { c.WireGuardKey = key }))
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	plan := res.Payload.Tunnel
	if plan == nil {
		t.Fatal("payload has no tunnel plan")
	}
	srv := tn.PublicKey()
	addr, err := netip.ParsePrefix(plan.Address)
	if err != nil || !tunnelPrefix.Contains(addr.Addr()) || addr.Bits() != tunnelPrefix.Bits() {
		t.Errorf("plan address = %q, want an address in %v", plan.Address, tunnelPrefix)
	}
	if !slices.Equal(plan.ServerKey, srv[:]) || plan.ServerAddr != tn.ServerAddr().String() || plan.Endpoint != "192.0.2.1:51820" {
		t.Errorf("plan = %+v, want the server's key, address and endpoint", plan)
	}
	if got, ok := tn.PeerAddr(&net.TCPAddr{IP: addr.Addr().AsSlice(), Port: 3260}); !ok || got != m.id {
		t.Fatalf("PeerAddr(%v) = %q, %v; want %s", addr, got, ok, m.id)
	}
	if _, err := e.mgr.Revoke(context.Background(), "node-t", "decommissioned"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if p := tn.Peers(); len(p) != 0 {
		t.Fatalf("peers after revoke = %v, want none", p)
	}
	if _, ok := tn.PeerAddr(&net.TCPAddr{IP: addr.Addr().AsSlice(), Port: 3260}); ok {
		t.Fatal("revoked machine still owns its tunnel address")
	}
}

func TestTunnelKeyRequired(t *testing.T) {
	tests := []struct {
		name       string
		transport  string
		wantRefuse bool
	}{
		{"wireguard_transport_refuses", attest.TransportWireGuard, true},
		{"plain_transport_allows", attest.TransportPlain, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn := newTunnel(t)
			e := newEnv(t, withTunnels(tn, tt.transport))
			m := newMachine(t, defaultSpec)
			e.enrollAndApprove(t, m, "node-k")
			res, err := attestOnce(t, e.client(t, m.dev)) // no WireGuard key
			if tt.wantRefuse {
				e.wantRefused(t, err, m.id, "tunnel")
				if len(tn.Peers()) != 0 {
					t.Fatal("refused machine has a peer")
				}
				return
			}
			if err != nil {
				t.Fatalf("attest: %v", err)
			}
			if res.Payload.Tunnel != nil || len(tn.Peers()) != 0 {
				t.Fatalf("plain transport: tunnel plan %+v, peers %v; want none", res.Payload.Tunnel, tn.Peers())
			}
		})
	}
}
