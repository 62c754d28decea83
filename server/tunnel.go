package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/tunnel"
)

// newTunnel starts the tunnel with its key and state in the state
// directory, and drops restored peers of machines no longer approved
// (revoked or forgotten while the server was down).
func newTunnel(ctx context.Context, tc *config.TunnelConfig, stateDir string, st store.Store, logger hclog.Logger) (*tunnel.Tunnel, error) {
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

// lastHandshake is letgo.Config.LastHandshake over tn; nil without a
// tunnel. A device that cannot be read counts as a handshake now: the
// machine is not taken for gone on the server's own failure.
func lastHandshake(tn *tunnel.Tunnel) func(string) (time.Time, bool) {
	if tn == nil {
		return nil
	}
	return func(machineID string) (time.Time, bool) {
		st, ok, err := tn.Status(machineID)
		switch {
		case err != nil:
			return time.Now(), true
		case !ok:
			return time.Time{}, false
		}
		return st.LastHandshake, true
	}
}

// storageTargets withdraws let-go user roots from the server's storage,
// which New opens after the let-go watcher it reports to.
type storageTargets struct{ s *Server }

func (t storageTargets) WithdrawLetGo(ctx context.Context, e roots.UserRootEnd) error {
	return t.s.storage.WithdrawLetGo(ctx, e)
}
