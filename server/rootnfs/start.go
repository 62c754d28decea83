package rootnfs

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/sealroot/sealroot/server/nfs"
)

// startTimeout bounds starting ganesha and restoring the exports.
const startTimeout = 2 * time.Minute

// Start starts nfs-ganesha, supervised, with its configuration in
// ganeshaDir, serving on cfg.ServerAddr and cfg.ServerPort, and a Provider
// exporting through it (cfg.Exporter is set to it), and restores the
// exports of the machines that were running. g's BindAddr and Port are
// set here. Close the Ganesha before the Provider, also after an error.
func Start(ctx context.Context, cfg Config, g nfs.GaneshaConfig) (*Provider, *nfs.Ganesha, error) {
	if err := os.MkdirAll(g.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("nfs: %w", err)
	}
	if cfg.ServerPort == 0 {
		cfg.ServerPort = 2049
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	g.Config.BindAddr, g.Config.Port = cfg.ServerAddr, cfg.ServerPort
	if g.Logger == nil {
		g.Logger = cfg.Logger
	}
	ganesha, err := nfs.StartGanesha(ctx, g, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("nfs: %w", err)
	}
	cfg.Exporter = ganesha
	p, err := New(cfg)
	if err != nil {
		return nil, ganesha, err
	}
	n, err := p.Restore(ctx)
	if err != nil {
		return p, ganesha, err
	}
	p.log.Info("nfs roots", "addr", netip.AddrPortFrom(cfg.ServerAddr, cfg.ServerPort), "dir", cfg.Dir, "restored", n)
	return p, ganesha, nil
}
