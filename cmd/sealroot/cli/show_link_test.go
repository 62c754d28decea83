package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

func TestWriteMachine_root_link(t *testing.T) {
	hs := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	iscsi := wire.RootPlan{Kind: wire.RootISCSI}
	ownPlain := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{"transport": "plain"}}
	tests := []struct {
		name     string
		root     wire.RootPlan
		link     *api.RootLink
		want     string
		wantWarn bool
	}{
		{"tunnel_handshake", iscsi,
			&api.RootLink{Transport: "wireguard", Tunnel: true, Address: "10.200.0.7", Peer: true, LastHandshake: hs},
			"Root link:      WireGuard tunnel, address 10.200.0.7, last handshake 2026-03-04T05:06:07Z\n", false},
		{"tunnel_no_handshake", iscsi,
			&api.RootLink{Transport: "wireguard", Tunnel: true, Address: "10.200.0.7", Peer: true},
			"Root link:      WireGuard tunnel, address 10.200.0.7, no handshake yet\n", false},
		{"tunnel_no_peer", iscsi,
			&api.RootLink{Transport: "wireguard", Tunnel: true},
			"Root link:      WireGuard tunnel, address -, no peer (not booted with a key since, or revoked)\n", false},
		{"no_tunnel", iscsi, &api.RootLink{Transport: "plain"},
			"Root link:      plain LAN (the server runs no WireGuard tunnel)\n", true},
		{"server_plain", iscsi, &api.RootLink{Transport: "plain", ServerTransport: "plain", Tunnel: true},
			"Root link:      plain LAN (server-wide --root-transport=plain)\n", true},
		{"machine_plain", ownPlain, &api.RootLink{Transport: "plain", ServerTransport: "wireguard", Tunnel: true},
			"Root link:      plain LAN (transport plain set for this machine)\n", true},
		{"plain_allowed_tunnel_used", iscsi,
			&api.RootLink{Transport: "plain", ServerTransport: "plain", Tunnel: true, Address: "10.200.0.7", Peer: true, LastHandshake: hs},
			"Root link:      WireGuard tunnel this boot, address 10.200.0.7, last handshake 2026-03-04T05:06:07Z; plain allowed (server-wide --root-transport=plain)\n", true},
		{"plain_attest_only", wire.RootPlan{Kind: wire.RootNone}, &api.RootLink{Transport: "plain"},
			"Root link:      plain LAN (the server runs no WireGuard tunnel)\n", false},
		{"not_reported", iscsi, nil,
			"Root link:      server default (the server did not report its root transport)\n", false},
		{"not_reported_machine_plain", ownPlain, nil,
			"Root link:      plain (set for this machine; the server did not report its tunnel)\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			m := &api.Machine{State: api.StateApproved, Policy: api.PolicyPinned, Root: tt.root}
			if err := writeMachine(&b, m, tt.link); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if !strings.Contains(out, tt.want) {
				t.Errorf("machine show lacks %q:\n%s", tt.want, out)
			}
			warn := "WARNING:        " + plainWarning + "\n"
			if got := strings.Contains(out, warn); got != tt.wantWarn {
				t.Errorf("plain warning shown = %v, want %v:\n%s", got, tt.wantWarn, out)
			}
		})
	}
}

// TestWriteMachine_hostile_address: an address in the record cannot drive
// the terminal.
func TestWriteMachine_hostile_address(t *testing.T) {
	var b strings.Builder
	link := &api.RootLink{Transport: "wireguard", Tunnel: true, Address: "\x1b[2J", Peer: true}
	if err := writeMachine(&b, &api.Machine{}, link); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "\x1b") {
		t.Errorf("raw escape in output: %q", b.String())
	}
}
