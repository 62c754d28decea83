package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/tunnel"
)

// TunnelConfig configures the WireGuard root link (package server/tunnel).
type TunnelConfig struct {
	// Prefix is the tunnel network; the server takes its first address,
	// machines the others.
	// Default: none (required).
	// Example: "10.200.0.0/16".
	Prefix string `json:"prefix"`
	// ListenPort is the WireGuard UDP port.
	// Default: 51820.
	// Example: 51820.
	ListenPort int `json:"listen_port,omitempty"`
	// Endpoint is the ip:port agents send WireGuard packets to: this
	// server's address on the boot network and listen_port.
	// Default: none (required).
	// Example: "192.168.1.10:51820".
	Endpoint string `json:"endpoint"`
	// Interface names the TUN interface.
	// Default: "sealroot0".
	// Example: "sealroot0".
	Interface string `json:"interface,omitempty"`
	// Netstack forces the in-process network stack even as root (else a
	// kernel TUN interface is used when running as root). NFS roots need
	// the TUN interface.
	// Default: false.
	// Example: true.
	Netstack bool `json:"netstack,omitempty"`
}

// newTunnel starts the tunnel with its key and state in the state
// directory, and drops restored peers of machines no longer approved
// (revoked or forgotten while the server was down).
func newTunnel(ctx context.Context, tc *TunnelConfig, stateDir string, st store.Store, logger hclog.Logger) (*tunnel.Tunnel, error) {
	prefix, err := netip.ParsePrefix(tc.Prefix)
	if err != nil {
		return nil, fmt.Errorf("tunnel prefix: %w", err)
	}
	port := tc.ListenPort
	if port == 0 {
		port = 51820
	}
	tn, err := tunnel.New(tunnel.Config{
		Prefix:         prefix,
		ListenPort:     port,
		Endpoint:       tc.Endpoint,
		PrivateKeyPath: filepath.Join(stateDir, "tunnel.key"),
		StatePath:      filepath.Join(stateDir, "tunnel.json"),
		UseTUN:         os.Geteuid() == 0 && !tc.Netstack,
		Interface:      tc.Interface,
		Logger:         logger,
	})
	if err != nil {
		return nil, err
	}
	for _, id := range tn.Peers() {
		m, err := st.Machine(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			tn.Close()
			return nil, fmt.Errorf("tunnel: check machine %s: %w", id, err)
		}
		if m == nil || m.State != store.StateApproved {
			if err := tn.Remove(id); err != nil {
				tn.Close()
				return nil, err
			}
		}
	}
	return tn, nil
}
