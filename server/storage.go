package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/iscsi"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
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

// storage is the image store, the volumes and the iSCSI root service.
type storage struct {
	images  *image.Store
	volumes *volume.Manager
	roots   *rootiscsi.Provider // nil without Config.ISCSI

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
	if cfg.ISCSI == nil {
		return st, nil
	}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
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
		st.tunnelLn, st.tunnelSrv = ln, &iscsi.Server{Logger: st.logger.Named("iscsi-tunnel")}
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
		st.plainLn, st.plainSrv = ln, &iscsi.Server{Logger: st.logger.Named("iscsi")}
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

// releaseRoot withdraws a machine's root target, if iSCSI roots are on.
func (st *storage) releaseRoot(ctx context.Context, id string) error {
	if st.roots == nil {
		return nil
	}
	return st.roots.Release(ctx, id)
}

// close withdraws the targets and closes the listeners (Serve closes
// them too; a second Close is harmless).
func (st *storage) close() error {
	var err error
	if st.roots != nil {
		err = st.roots.Close()
	}
	for _, ln := range []net.Listener{st.tunnelLn, st.plainLn} {
		if ln != nil {
			ln.Close()
		}
	}
	return err
}

// record audits an operator's storage operation.
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
