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

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/iscsi"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/rootnfs"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/wire"
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

// storage is the image store, the volumes and the root services. It is
// attest's root provider: it hands each machine's boot to the provider of
// its root kind and withdraws the other's.
type storage struct {
	images   *image.Store
	volumes  *volume.Manager
	roots    *rootiscsi.Provider // nil without Config.ISCSI
	nfsRoots *rootnfs.Provider   // nil without Config.NFS
	ganesha  *nfs.Ganesha

	tunnelSrv, plainSrv *iscsi.Server
	tunnelLn, plainLn   net.Listener

	machines *machines.Manager
	store    store.Store
	audit    *audit.Log
	logger   hclog.Logger
}

func newStorage(ctx context.Context, cfg *Config, db store.Store, al *audit.Log, mgr *machines.Manager,
	box *secrets.Box, tn *tunnel.Tunnel, logger hclog.Logger) (_ *storage, err error) {
	st := &storage{machines: mgr, store: db, audit: al, logger: logger.Named("storage")}
	imgDir := filepath.Join(cfg.StateDir, "images")
	if cfg.Images != nil && cfg.Images.Dir != "" {
		imgDir = cfg.Images.Dir
	}
	if st.images, err = image.Open(image.Config{Dir: imgDir, Logger: logger}); err != nil {
		return nil, err
	}
	volCfg := volume.Config{Dir: filepath.Join(cfg.StateDir, "volumes"), Bases: st.images, Logger: logger}
	if cfg.Volumes != nil {
		if cfg.Volumes.Dir != "" {
			volCfg.Dir = cfg.Volumes.Dir
		}
		volCfg.NoReflink = cfg.Volumes.NoReflink
	}
	if st.volumes, err = volume.New(volCfg); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	if cfg.NFS != nil {
		if err := st.startNFS(ctx, cfg, tn, logger); err != nil {
			return nil, err
		}
	}
	if cfg.ISCSI == nil {
		return st, nil
	}
	pcfg, err := st.listen(cfg.ISCSI, tn)
	if err != nil {
		return nil, err
	}
	pcfg.Images, pcfg.Volumes, pcfg.Logger = st.images, st.volumes, logger
	pcfg.StateDir, pcfg.Box = filepath.Join(cfg.StateDir, "iscsi"), box
	if st.roots, err = rootiscsi.New(pcfg); err != nil {
		return nil, err
	}
	n, err := st.roots.Restore(ctx)
	if err != nil {
		return nil, err
	}
	logger.Info("iscsi roots", "tunnel", pcfg.TunnelPortal, "plain", pcfg.PlainPortal, "restored", n)
	return st, nil
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

// Prepare implements attest.RootProvider: the provider of the machine's
// root kind prepares it, the others withdraw any root they served it. A
// kind whose service is not configured passes through unchanged.
func (st *storage) Prepare(ctx context.Context, m *store.Machine, tn *wire.TunnelPlan) (wire.RootPlan, map[string][]byte, error) {
	own := st.providerOf(m.Root)
	for _, p := range st.providers() {
		if p == own {
			continue
		}
		if err := p.Release(ctx, m.ID); err != nil {
			return wire.RootPlan{}, nil, err
		}
	}
	if own == nil {
		return m.Root, nil, nil
	}
	return own.Prepare(ctx, m, tn)
}

// Release implements attest.RootProvider.
func (st *storage) Release(ctx context.Context, id string) error { return st.releaseRoot(ctx, id) }

// providers are the configured root providers.
func (st *storage) providers() []attest.RootProvider {
	var ps []attest.RootProvider
	if st.roots != nil {
		ps = append(ps, st.roots)
	}
	if st.nfsRoots != nil {
		ps = append(ps, st.nfsRoots)
	}
	return ps
}

// providerOf is the configured provider that serves root, or nil.
func (st *storage) providerOf(root wire.RootPlan) attest.RootProvider {
	switch {
	case rootiscsi.Serves(root) && st.roots != nil:
		return st.roots
	case (root.Kind == wire.RootNFS || root.Kind == wire.RootVolatile) && !rootiscsi.Serves(root) && st.nfsRoots != nil:
		return st.nfsRoots
	}
	return nil
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

// releaseRoot withdraws a machine's iSCSI target and NFS export, if any.
func (st *storage) releaseRoot(ctx context.Context, id string) error {
	var errs []error
	for _, p := range st.providers() {
		errs = append(errs, p.Release(ctx, id))
	}
	return errors.Join(errs...)
}

// close withdraws the targets, stops ganesha, unmounts the NFS roots and
// closes the listeners (Serve closes them too; a second Close is
// harmless).
func (st *storage) close() error {
	var err error
	if st.roots != nil {
		err = st.roots.Close()
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

// record audits an operator's storage operation.
// change records action first and runs apply only when the record is on
// disk (else api.ErrUnavailable, nothing done); an apply that fails is
// recorded again with its error. See package machines.
func (st *storage) change(ctx context.Context, action, machineID, reason string, apply func() error) error {
	actor := actorFrom(ctx)
	e := audit.Entry{Time: time.Now(), Actor: actor, MachineID: machineID, Action: action, Outcome: "ok", Reason: reason}
	if err := st.audit.Record(e); err != nil {
		st.logger.Error("audit log write failed: operation refused", "action", action, "machine", machineID, "error", err)
		return fmt.Errorf("%w: %s not done: %w", api.ErrUnavailable, action, err)
	}
	st.logger.Info(action, "machine", machineID, "actor", actor, "detail", reason)
	if err := apply(); err != nil {
		st.record(ctx, action, machineID, reason, err)
		return err
	}
	return nil
}

// record writes the audit entry of an operation that ended with err,
// after the fact; a failure to write it is logged.
func (st *storage) record(ctx context.Context, action, machineID, reason string, err error) {
	outcome := "ok"
	if err != nil {
		outcome, reason = "error", err.Error()
		if isRefusal(err) {
			outcome = "refused"
		}
	}
	actor := actorFrom(ctx)
	if err == nil {
		st.logger.Info(action, "machine", machineID, "actor", actor, "detail", reason)
	}
	e := audit.Entry{Time: time.Now(), Actor: actor, MachineID: machineID, Action: action, Outcome: outcome, Reason: reason}
	if aerr := st.audit.Record(e); aerr != nil {
		st.logger.Error("audit log write failed", "action", action, "error", aerr)
	}
}

type actorKey struct{}

// withActor records the operator for storage audit entries as well as
// for package machines.
func withActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(machines.WithActor(ctx, actor), actorKey{}, actor)
}

func actorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return machines.DefaultActor
}
