package server

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/rootnfs"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/server/volume"
)

// ImagesConfig is the "images" section: the base image store.
type ImagesConfig struct {
	// Dir holds the base images (absolute path).
	// Default: "<state_dir>/images".
	// Example: "/srv/sealroot/images".
	Dir string `json:"dir,omitempty"`
}

// VolumesConfig is the "volumes" section: machines' copy-on-write volumes.
type VolumesConfig struct {
	// Dir holds the machines' volumes (absolute path; XFS or btrfs give
	// reflink copies).
	// Default: "<state_dir>/volumes".
	// Example: "/srv/sealroot/volumes".
	Dir string `json:"dir,omitempty"`
	// NoReflink forces copy-on-write overlays even on XFS and btrfs.
	// Default: false.
	// Example: true.
	NoReflink bool `json:"no_reflink,omitempty"`
}

// ISCSIConfig is the "iscsi" section; nil: no iSCSI roots. With a tunnel
// the target listens on the tunnel address only, at Port; Listen adds a
// plain listener for machines on the plain root transport.
type ISCSIConfig struct {
	// Listen is the plain listener's ip:port, advertised to agents as
	// is, so the IP must be a specific address. Empty: only the tunnel
	// listener.
	// Default: "" (none).
	// Example: "192.168.1.10:3260".
	Listen string `json:"listen,omitempty"`
	// Port is the tunnel listener's port.
	// Default: 3260.
	// Example: 3260.
	Port int `json:"port,omitempty"`
}

// NFSConfig is the "nfs" section; nil: no NFS roots. NFS roots are
// served by a supervised nfs-ganesha on the server's tunnel address only,
// so they need the tunnel on a kernel TUN interface (sealroot running as
// root, tunnel.netstack off).
type NFSConfig struct {
	// Dir holds the machines' roots (overlay upper directories). It must
	// support trusted xattrs (ext4, XFS, btrfs).
	// Default: "<state_dir>/nfs/roots".
	// Example: "/srv/sealroot/nfs".
	Dir string `json:"dir,omitempty"`
	// Port is the NFS port on the tunnel address.
	// Default: 2049.
	// Example: 2049.
	Port uint16 `json:"port,omitempty"`
	// Ganesha is the nfs-ganesha daemon binary (looked up in PATH).
	// Default: "ganesha.nfsd".
	// Example: "/usr/bin/ganesha.nfsd".
	Ganesha string `json:"ganesha,omitempty"`
	// GraceSeconds is NFSv4's grace period after a restart, in which
	// clients reclaim their state (package nfs).
	// Default: 20.
	// Example: 30.
	GraceSeconds uint32 `json:"grace_seconds,omitempty"`
	// LeaseSeconds is the NFSv4 lease: a client silent this long loses
	// its state.
	// Default: 20.
	// Example: 30.
	LeaseSeconds uint32 `json:"lease_seconds,omitempty"`
}

// storage is the image store, the volumes and the root providers with
// the iSCSI portals and ganesha they serve through.
type storage struct {
	images   *image.Store
	volumes  *volume.Manager
	iscsi    *rootiscsi.Provider // nil without Config.ISCSI
	portals  *rootiscsi.Portals  // nil without Config.ISCSI
	nfsRoots *rootnfs.Provider   // nil without Config.NFS
	ganesha  *nfs.Ganesha
}

// open opens the image store and the volumes, starts the configured root
// providers and restores the roots they served; close undoes it, also
// when open fails half way.
func (st *storage) open(ctx context.Context, cfg *Config, box *secrets.Box, tn *tunnel.Tunnel, logger hclog.Logger) (err error) {
	imgDir := filepath.Join(cfg.StateDir, "images")
	if cfg.Images != nil && cfg.Images.Dir != "" {
		imgDir = cfg.Images.Dir
	}
	if st.images, err = image.Open(image.Config{Dir: imgDir, Logger: logger}); err != nil {
		return err
	}
	volCfg := volume.Config{Dir: filepath.Join(cfg.StateDir, "volumes"), Bases: st.images, Logger: logger}
	if cfg.Volumes != nil {
		if cfg.Volumes.Dir != "" {
			volCfg.Dir = cfg.Volumes.Dir
		}
		volCfg.NoReflink = cfg.Volumes.NoReflink
	}
	if st.volumes, err = volume.New(volCfg); err != nil {
		return err
	}
	if cfg.NFS != nil {
		if err := st.startNFS(ctx, cfg, tn, logger); err != nil {
			return err
		}
	}
	if cfg.ISCSI == nil {
		return nil
	}
	pcfg := rootiscsi.Config{Images: st.images, Volumes: st.volumes, Logger: logger,
		StateDir: filepath.Join(cfg.StateDir, "iscsi"), Box: box}
	var rtn rootiscsi.Tunnel
	if tn != nil {
		rtn = tn
	}
	if st.portals, err = rootiscsi.ListenPortals(&pcfg, rtn, cfg.ISCSI.Port, cfg.ISCSI.Listen, logger.Named("storage")); err != nil {
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
func (st *storage) startNFS(ctx context.Context, cfg *Config, tn *tunnel.Tunnel, logger hclog.Logger) (err error) {
	c := cfg.NFS
	if tn == nil || !tn.Kernel() {
		return errors.New("nfs: NFS roots are served on the tunnel only: configure a tunnel on a kernel TUN interface (run as root, without tunnel.netstack)")
	}
	rootsDir := c.Dir
	if rootsDir == "" {
		rootsDir = filepath.Join(cfg.StateDir, "nfs", "roots")
	}
	st.nfsRoots, st.ganesha, err = rootnfs.Start(ctx,
		rootnfs.Config{Dir: rootsDir, Images: st.images, ServerAddr: tn.ServerAddr(), ServerPort: c.Port, Logger: logger},
		nfs.GaneshaConfig{Dir: filepath.Join(cfg.StateDir, "nfs", "ganesha"), Binary: c.Ganesha, Logger: logger,
			Config: nfs.Config{GraceSeconds: c.GraceSeconds, LeaseSeconds: c.LeaseSeconds}})
	return err
}

// providers are the configured root providers by the kinds they serve
// (package roots).
func (st *storage) providers() map[string]roots.Provider {
	ps := map[string]roots.Provider{}
	if st.iscsi != nil {
		ps[roots.KindISCSI], ps[roots.KindVolatileISCSI] = st.iscsi, st.iscsi
	}
	if st.nfsRoots != nil {
		ps[roots.KindNFS], ps[roots.KindVolatileNFS] = st.nfsRoots, st.nfsRoots
	}
	return ps
}

// close withdraws the targets, stops ganesha, unmounts the NFS roots and
// closes the iSCSI listeners.
func (st *storage) close() error {
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
	if st.portals != nil {
		st.portals.Close()
	}
	return err
}
