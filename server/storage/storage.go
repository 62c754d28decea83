// Package storage opens what roots are made of and served by: the image
// store, the machines' volumes, and the configured root providers (iSCSI
// with its portals, NFS through a supervised nfs-ganesha).
package storage

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/rootnfs"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/server/volume"
)

// Storage is the image store, the volumes and the root providers with
// the iSCSI portals and ganesha they serve through.
type Storage struct {
	Images  *image.Store
	Volumes *volume.Manager
	// Portals are the iSCSI listeners; nil without config.Config.ISCSI.
	Portals *rootiscsi.Portals

	iscsi    *rootiscsi.Provider // nil without config.Config.ISCSI
	nfsRoots *rootnfs.Provider   // nil without config.Config.NFS
	ganesha  *nfs.Ganesha
}

// Open opens the image store and the volumes, starts the configured root
// providers and restores the roots they served. tn is nil without a
// tunnel; a machine whose tunnel peer had no handshake for letGoAfter
// counts as off for its NFS root. userRootEnded, when set, is told each
// time a session of a user's iSCSI root ends or a user's NFS root is
// exported (rootiscsi.Config.UserRootEnded,
// rootnfs.Config.UserRootExported). Close undoes it; Open undoes itself
// when it fails half way.
func Open(ctx context.Context, cfg *config.Config, box *secrets.Box, tn *tunnel.Tunnel, letGoAfter time.Duration, userRootEnded func(roots.UserRootEnd), logger hclog.Logger) (_ *Storage, err error) {
	st := &Storage{}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if err := st.open(ctx, cfg, box, tn, letGoAfter, userRootEnded, logger); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *Storage) open(ctx context.Context, cfg *config.Config, box *secrets.Box, tn *tunnel.Tunnel, letGoAfter time.Duration, userRootEnded func(roots.UserRootEnd), logger hclog.Logger) (err error) {
	imgDir := filepath.Join(cfg.StateDir, "images")
	if cfg.Images != nil && cfg.Images.Dir != "" {
		imgDir = cfg.Images.Dir
	}
	if st.Images, err = image.Open(image.Config{Dir: imgDir, Logger: logger}); err != nil {
		return err
	}
	volCfg := volume.Config{Dir: filepath.Join(cfg.StateDir, "volumes"), Bases: st.Images, Logger: logger}
	if cfg.Volumes != nil {
		if cfg.Volumes.Dir != "" {
			volCfg.Dir = cfg.Volumes.Dir
		}
		volCfg.NoReflink = cfg.Volumes.NoReflink
	}
	if st.Volumes, err = volume.New(volCfg); err != nil {
		return err
	}
	if cfg.NFS != nil {
		if err := st.startNFS(ctx, cfg, tn, letGoAfter, userRootEnded, logger); err != nil {
			return err
		}
	}
	if cfg.ISCSI == nil {
		return nil
	}
	pcfg := rootiscsi.Config{Images: st.Images, Volumes: st.Volumes, Logger: logger,
		StateDir: filepath.Join(cfg.StateDir, "iscsi"), Box: box, UserRootEnded: userRootEnded}
	var rtn rootiscsi.Tunnel
	if tn != nil {
		rtn = tn
	}
	maxConns := 0
	if cfg.Limits != nil {
		maxConns = cfg.Limits.ISCSIConns
	}
	if st.Portals, err = rootiscsi.ListenPortals(&pcfg, rtn, cfg.ISCSI.Port, cfg.ISCSI.Listen, maxConns, logger.Named("storage")); err != nil {
		return err
	}
	if st.iscsi, err = rootiscsi.New(pcfg); err != nil {
		return err
	}
	n, err := st.iscsi.Restore(ctx)
	if err != nil {
		return err
	}
	logger.Info("iscsi roots", "tunnel", pcfg.TunnelPortal, "plain", pcfg.PlainPortal, "restored", n)
	return nil
}

// startNFS starts ganesha on the tunnel address and restores the
// exports of the machines that were running.
func (st *Storage) startNFS(ctx context.Context, cfg *config.Config, tn *tunnel.Tunnel, letGoAfter time.Duration, userRootExported func(roots.UserRootEnd), logger hclog.Logger) (err error) {
	c := cfg.NFS
	if tn == nil || !tn.Kernel() {
		return errors.New("nfs: NFS roots are served on the tunnel only: configure a tunnel on a kernel TUN interface (run as root, without tunnel.netstack)")
	}
	rootsDir := c.Dir
	if rootsDir == "" {
		rootsDir = filepath.Join(cfg.StateDir, "nfs", "roots")
	}
	st.nfsRoots, st.ganesha, err = rootnfs.Start(ctx,
		rootnfs.Config{Dir: rootsDir, Images: st.Images, ServerAddr: tn.ServerAddr(), ServerPort: c.Port, Logger: logger,
			Active: func(id string) bool { return peerActive(tn, id, time.Now(), letGoAfter) }, UserRootExported: userRootExported},
		nfs.GaneshaConfig{Dir: filepath.Join(cfg.StateDir, "nfs", "ganesha"), Binary: c.Ganesha, Logger: logger,
			Config: nfs.Config{GraceSeconds: c.GraceSeconds, LeaseSeconds: c.LeaseSeconds}})
	return err
}

// Providers are the configured root providers by the kinds they serve
// (package roots).
func (st *Storage) Providers() map[string]roots.Provider {
	ps := map[string]roots.Provider{}
	if st.iscsi != nil {
		ps[roots.KindISCSI], ps[roots.KindVolatileISCSI] = st.iscsi, st.iscsi
	}
	if st.nfsRoots != nil {
		ps[roots.KindNFS], ps[roots.KindVolatileNFS] = st.nfsRoots, st.nfsRoots
	}
	return ps
}

// Close withdraws the targets, stops ganesha, unmounts the NFS roots and
// closes the iSCSI listeners.
func (st *Storage) Close() error {
	var err error
	if st.iscsi != nil {
		err = st.iscsi.Close()
	}
	if st.ganesha != nil {
		err = errors.Join(err, st.ganesha.Close())
	}
	if st.nfsRoots != nil {
		err = errors.Join(err, st.nfsRoots.Close())
	}
	if st.Portals != nil {
		st.Portals.Close()
	}
	return err
}

// peerActive reports whether the machine's tunnel peer had a handshake
// within idle (limits.let_go_after, default three minutes): WireGuard
// rekeys every two minutes while traffic flows (an NFS client renews its
// lease well within that), so a machine that is off has none. An
// unreadable device counts as active.
func peerActive(tn *tunnel.Tunnel, machineID string, now time.Time, idle time.Duration) bool {
	st, ok, err := tn.Status(machineID)
	if err != nil {
		return true
	}
	return ok && !st.LastHandshake.IsZero() && now.Sub(st.LastHandshake) < idle
}

// WithdrawLetGo withdraws the target or export of a user's root whose
// machine let go (rootiscsi.Provider.WithdrawLetGo,
// rootnfs.Provider.WithdrawLetGo); a provider that does not serve it
// answers nil.
func (st *Storage) WithdrawLetGo(ctx context.Context, e roots.UserRootEnd) error {
	var errs []error
	if st.iscsi != nil {
		errs = append(errs, st.iscsi.WithdrawLetGo(ctx, e))
	}
	if st.nfsRoots != nil {
		errs = append(errs, st.nfsRoots.WithdrawLetGo(ctx, e))
	}
	return errors.Join(errs...)
}

// ServedUserRoots lists the users' iSCSI and NFS roots served now
// (rootiscsi.Provider.ServedUserRoots, rootnfs.Provider.ServedUserRoots).
func (st *Storage) ServedUserRoots() []roots.UserRootEnd {
	var out []roots.UserRootEnd
	if st.iscsi != nil {
		out = append(out, st.iscsi.ServedUserRoots()...)
	}
	if st.nfsRoots != nil {
		out = append(out, st.nfsRoots.ServedUserRoots()...)
	}
	return out
}

// NFSExports returns the NFS roots exported now, by machine ID; nil
// without NFS.
func (st *Storage) NFSExports() map[string]nfs.Export {
	if st.nfsRoots == nil {
		return nil
	}
	return st.nfsRoots.Exports()
}

// Ganesha is the supervised nfs-ganesha, nil without NFS.
func (st *Storage) Ganesha() *nfs.Ganesha { return st.ganesha }
