package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/iscsi"
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
	Dir string `json:"dir,omitempty"` // default <state_dir>/images
}

// VolumesConfig is the "volumes" section: machines' copy-on-write volumes.
type VolumesConfig struct {
	Dir string `json:"dir,omitempty"` // default <state_dir>/volumes
	// NoReflink forces cow overlays even on XFS and btrfs.
	NoReflink bool `json:"no_reflink,omitempty"`
}

// ISCSIConfig is the "iscsi" section; nil: no iSCSI roots. With a tunnel
// the target listens on the tunnel address only, at Port; Listen adds a
// plain listener for machines on the plain root transport.
type ISCSIConfig struct {
	// Listen is the plain listener's ip:port, advertised to agents as
	// is, so the IP must be a specific address.
	Listen string `json:"listen,omitempty"`
	// Port is the tunnel listener's port; default 3260.
	Port int `json:"port,omitempty"`
}

// NFSConfig is the "nfs" section; nil: no NFS roots. NFS roots are
// served by a supervised nfs-ganesha on the server's tunnel address only,
// so they need the tunnel on a kernel TUN interface (sealroot running as
// root, tunnel.netstack off).
type NFSConfig struct {
	// Dir holds the machines' roots (overlay upper directories); default
	// <state_dir>/nfs/roots. It must support trusted xattrs (ext4, XFS,
	// btrfs).
	Dir string `json:"dir,omitempty"`
	// Port is the NFS port; default 2049.
	Port uint16 `json:"port,omitempty"`
	// Ganesha is the daemon binary; default ganesha.nfsd.
	Ganesha string `json:"ganesha,omitempty"`
	// GraceSeconds and LeaseSeconds tune NFSv4 state recovery after a
	// restart (package nfs); defaults 20 and 20.
	GraceSeconds uint32 `json:"grace_seconds,omitempty"`
	LeaseSeconds uint32 `json:"lease_seconds,omitempty"`
}

// storage is the image store, the volumes and the root providers with
// the iSCSI listeners and ganesha they serve through.
type storage struct {
	images   *image.Store
	volumes  *volume.Manager
	iscsi    *rootiscsi.Provider // nil without Config.ISCSI
	nfsRoots *rootnfs.Provider   // nil without Config.NFS
	ganesha  *nfs.Ganesha

	tunnelSrv, plainSrv *iscsi.Server
	tunnelLn, plainLn   net.Listener

	logger hclog.Logger
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
	pcfg, err := st.listen(cfg.ISCSI, tn)
	if err != nil {
		return err
	}
	pcfg.Images, pcfg.Volumes, pcfg.Logger = st.images, st.volumes, logger
	pcfg.StateDir, pcfg.Box = filepath.Join(cfg.StateDir, "iscsi"), box
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
func (st *storage) startNFS(ctx context.Context, cfg *Config, tn *tunnel.Tunnel, logger hclog.Logger) error {
	c := cfg.NFS
	if tn == nil || !tn.Kernel() {
		return errors.New("nfs: NFS roots are served on the tunnel only: configure a tunnel on a kernel TUN interface (run as root, without tunnel.netstack)")
	}
	dir := filepath.Join(cfg.StateDir, "nfs")
	gdir := filepath.Join(dir, "ganesha")
	if err := os.MkdirAll(gdir, 0o700); err != nil {
		return fmt.Errorf("nfs: %w", err)
	}
	rootsDir := c.Dir
	if rootsDir == "" {
		rootsDir = filepath.Join(dir, "roots")
	}
	port := c.Port
	if port == 0 {
		port = 2049
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	g, err := nfs.StartGanesha(sctx, nfs.GaneshaConfig{
		Dir: gdir,
		Config: nfs.Config{BindAddr: tn.ServerAddr(), Port: port,
			GraceSeconds: c.GraceSeconds, LeaseSeconds: c.LeaseSeconds},
		Binary: c.Ganesha,
		Logger: logger,
	}, nil)
	if err != nil {
		return fmt.Errorf("nfs: %w", err)
	}
	st.ganesha = g
	st.nfsRoots, err = rootnfs.New(rootnfs.Config{Dir: rootsDir, Images: st.images, Exporter: g,
		ServerAddr: tn.ServerAddr(), ServerPort: port, Logger: logger})
	if err != nil {
		return err
	}
	n, err := st.nfsRoots.Restore(sctx)
	if err != nil {
		return err
	}
	logger.Info("nfs roots", "addr", netip.AddrPortFrom(tn.ServerAddr(), port), "dir", rootsDir, "restored", n)
	return nil
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

// listen opens the iSCSI listeners: on the tunnel, and on the plain
// address when configured.
func (st *storage) listen(c *ISCSIConfig, tn *tunnel.Tunnel) (rootiscsi.Config, error) {
	var pcfg rootiscsi.Config
	port := c.Port
	if port == 0 {
		port = rootiscsi.DefaultPort
	}
	if tn != nil {
		ln, err := tn.Listen("tcp", port)
		if err != nil {
			return pcfg, fmt.Errorf("iscsi: %w", err)
		}
		st.tunnelLn, st.tunnelSrv = ln, &iscsi.Server{Logger: st.logger.With("portal", "tunnel")}
		pcfg.Tunnelled, pcfg.Peers, pcfg.TunnelPortal = st.tunnelSrv, tn, rootiscsi.TunnelPortal(tn.ServerAddr(), port)
	}
	if c.Listen != "" {
		ap, err := netip.ParseAddrPort(c.Listen)
		if err != nil || ap.Addr().IsUnspecified() {
			return pcfg, fmt.Errorf("iscsi: listen %q: want a specific ip:port, which agents are told", c.Listen)
		}
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			return pcfg, fmt.Errorf("iscsi: %w", err)
		}
		st.plainLn, st.plainSrv = ln, &iscsi.Server{Logger: st.logger.With("portal", "plain")}
		pcfg.Plain, pcfg.PlainPortal = st.plainSrv, ln.Addr().String()
	}
	if tn == nil && c.Listen == "" {
		return pcfg, errors.New("iscsi: needs a tunnel section or a listen address")
	}
	return pcfg, nil
}

// serve runs the iSCSI listeners until ctx ends.
func (st *storage) serve(ctx context.Context, run func(string, func() error)) {
	if st.tunnelLn != nil {
		run("iscsi (tunnel)", func() error { return st.tunnelSrv.Serve(ctx, st.tunnelLn) })
	}
	if st.plainLn != nil {
		run("iscsi", func() error { return st.plainSrv.Serve(ctx, st.plainLn) })
	}
}

// close withdraws the targets, stops ganesha, unmounts the NFS roots and
// closes the listeners (Serve closes them too; a second Close is
// harmless).
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
	for _, ln := range []net.Listener{st.tunnelLn, st.plainLn} {
		if ln != nil {
			ln.Close()
		}
	}
	return err
}
