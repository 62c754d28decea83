package api_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/wire"
)

const (
	linkA = "aaaaaaaa11111111111111111111111111111111111111111111111111111111"
	linkB = "bbbbbbbb22222222222222222222222222222222222222222222222222222222"
)

// newLinkTunnel is an in-process (netstack) tunnel; nothing is sent.
func newLinkTunnel(t *testing.T) *tunnel.Tunnel {
	t.Helper()
	tn, err := tunnel.New(tunnel.Config{Prefix: netip.MustParsePrefix("10.200.0.0/24"), Endpoint: "127.0.0.1:51820"})
	if err != nil {
		t.Fatalf("tunnel.New: %v", err)
	}
	t.Cleanup(func() { tn.Close() })
	return tn
}

func TestRootLink(t *testing.T) {
	svc := apitest.NewService(t,
		&store.Machine{ID: linkA, Name: "a", State: store.StateApproved},
		&store.Machine{ID: linkB, Name: "b", State: store.StateApproved,
			Root: wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{"transport": "plain"}}})
	tn := newLinkTunnel(t)
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := key.PublicKey()
	plan, err := tn.Add(context.Background(), linkA, pub[:])
	if err != nil {
		t.Fatal(err)
	}
	wantAddr := netip.MustParsePrefix(plan.Address).Addr().String()
	tests := []struct {
		name  string
		links *api.Links
		ref   string
		want  api.RootLink
	}{
		{"peer_installed", &api.Links{Machines: svc, Tunnel: tn}, "a",
			api.RootLink{Transport: "wireguard", ServerTransport: "wireguard", Tunnel: true, Address: wantAddr, Peer: true}},
		{"machine_plain_without_peer", &api.Links{Machines: svc, Tunnel: tn}, "b",
			api.RootLink{Transport: "plain", ServerTransport: "wireguard", Tunnel: true}},
		{"server_plain", &api.Links{Machines: svc, Tunnel: tn, Transport: "plain"}, "a",
			api.RootLink{Transport: "plain", ServerTransport: "plain", Tunnel: true, Address: wantAddr, Peer: true}},
		{"no_tunnel", &api.Links{Machines: svc}, "a", api.RootLink{Transport: "plain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client.New(apitest.Serve(t, svc, api.WithRootLinks(tt.links)))
			got, err := c.RootLink(context.Background(), tt.ref)
			if err != nil {
				t.Fatalf("RootLink(%s): %v", tt.ref, err)
			}
			if *got != tt.want {
				t.Errorf("RootLink(%s) = %+v, want %+v", tt.ref, *got, tt.want)
			}
		})
	}
}

func TestRootLink_removed_peer(t *testing.T) {
	svc := apitest.NewService(t, &store.Machine{ID: linkA, Name: "a", State: store.StateApproved})
	tn := newLinkTunnel(t)
	key, _ := wgtypes.GeneratePrivateKey()
	pub := key.PublicKey()
	if _, err := tn.Add(context.Background(), linkA, pub[:]); err != nil {
		t.Fatal(err)
	}
	if err := tn.Remove(linkA); err != nil {
		t.Fatal(err)
	}
	got, err := (&api.Links{Machines: svc, Tunnel: tn}).RootLink(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer || got.Address == "" {
		t.Errorf("after Remove: %+v, want the address kept and no peer", *got)
	}
}

func TestRootLink_unknown_machine(t *testing.T) {
	svc := apitest.NewService(t)
	c := client.New(apitest.Serve(t, svc, api.WithRootLinks(&api.Links{Machines: svc})))
	if _, err := c.RootLink(context.Background(), "nosuch"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("RootLink(nosuch) = %v, want ErrNotFound", err)
	}
}

func TestRootLink_not_served(t *testing.T) {
	svc := apitest.NewService(t, &store.Machine{ID: linkA, Name: "a"})
	c := client.New(apitest.Serve(t, svc))
	if _, err := c.RootLink(context.Background(), "a"); err == nil {
		t.Error("RootLink on a server without the route succeeded")
	}
}
