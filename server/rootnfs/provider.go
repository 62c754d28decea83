// Package rootnfs serves each attested machine its root over NFSv4 from
// nfs-ganesha (package nfs). It is the root provider (package roots) of
// the kinds "nfs" and "volatile" (base via NFS).
//
// # Persistent roots (kind "nfs")
//
// A machine's root is an overlayfs of a read-only, content-addressed base
// tree (image.Store's trees/sha256-<hex>) under the machine's own upper
// directory, mounted at Dir/<id>/root with index=on,nfs_export=on and
// exported to the machine's tunnel address only, read-write without root
// squashing. The upper is tied to the base it was made on (state.json
// records the digest): when the machine's image later names another base,
// Prepare refuses with ErrImageChanged until an operator resets the
// root, and a base tree that changed on disk is refused by the kernel
// (nfs.ErrBaseChanged). Nothing is ever mounted over a foreign base.
//
// # Volatile roots (kind "volatile")
//
// A read-only bind mount of the image's current base tree, exported
// read-only to the machine, which puts a tmpfs upper over it: nothing
// persists, and a new image is used at the next boot.
//
// # Access
//
// Exports exist only for machines released in this boot (Prepare) and are
// withdrawn by Release (revocation, forgetting, another root kind, any
// operator operation on the root). Restore brings them back after a server
// restart, so running machines keep their roots.
//
// # Files
//
// provider.go prepares and withdraws exports (Prepare, Release, Restore,
// Close); mount.go puts a machine's root in place through the Mounter
// seam (overlay or read-only bind, lazy unmount when busy); state.go keeps
// each machine's state.json and directory layout; lifecycle.go holds the
// operator's operations (Reset, Snapshot, Rollback, Delete) and the bases
// image GC must keep. Tests run the logic over a fake Mounter without
// root, and the whole over the kernel and a real ganesha as root.
package rootnfs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/wire"
)

var _ roots.Provider = (*Provider)(nil)

// Version is the NFS version agents mount.
const Version = "4.2"

// Errors.
var (
	// ErrNoImage means an NFS root names no image.
	ErrNoImage = errors.New("nfs root names no image (root parameter \"image\")")
	// ErrNeedsTunnel means the machine has no WireGuard tunnel: NFS roots
	// are served on the tunnel only.
	ErrNeedsTunnel = errors.New("nfs roots are served on the WireGuard tunnel only, and this machine has no tunnel")
	// ErrImageChanged means the machine's image names another base than
	// the one its root's changes were made on.
	ErrImageChanged = errors.New("the machine's image changed since its root was made")
	// ErrNotFound means the machine has no NFS root state, or no such
	// snapshot.
	ErrNotFound = roots.ErrNotFound
	// ErrExists means a snapshot of that name exists.
	ErrExists = roots.ErrExists
	// ErrBadName means a machine ID or snapshot name is malformed.
	ErrBadName = roots.ErrBadName
)

// Images finds images and their trees; *image.Store implements it.
type Images interface {
	Get(ref string) (*image.Image, error)
	// Resolve is the image a root made on base mounts (image.Store.Resolve).
	Resolve(ref, base string) (*image.Image, error)
	TreePath(digest string) (string, error)
}

// Exporter serves a set of exports; *nfs.Ganesha implements it.
type Exporter interface {
	// WriteExports replaces the exports served, in the order of the
	// calls, and returns a wait that returns once they (or later ones)
	// are served or ctx ends.
	WriteExports(exports []nfs.Export) (wait func(ctx context.Context) error, err error)
}

// setExportsLocked has the exporter serve the live exports and waits
// until it does.
func (p *Provider) setExportsLocked(ctx context.Context) error {
	wait, err := p.cfg.Exporter.WriteExports(p.exportsLocked())
	if err != nil {
		return err
	}
	return wait(ctx)
}

// Config configures a Provider.
type Config struct {
	// Dir holds one directory per machine (upper, work, root, state.json,
	// snapshots/). Required, absolute, on a file system with trusted
	// xattrs (ext4, XFS, btrfs).
	Dir      string
	Images   Images   // required
	Exporter Exporter // required
	// ServerAddr is the address ganesha serves on, told to agents: the
	// server's tunnel address. Required.
	ServerAddr netip.Addr
	// ServerPort is ganesha's port; default 2049.
	ServerPort uint16
	// Mounter mounts and unmounts machines' roots; default: the kernel
	// (KernelMounter), which needs root (CAP_SYS_ADMIN).
	Mounter Mounter
	Logger  hclog.Logger // default discards
	// Active reports whether a machine is using its export now (its
	// tunnel peer is active); Hold refuses such a machine. Default: every
	// exported machine counts as active.
	Active func(machineID string) bool
	// UserRootExported, when set, is told each time a user's root is
	// exported to a machine (see UserRootEnd): NFS has no session the
	// server sees end, so package letgo watches the machine's tunnel
	// from then on. It runs under the provider's lock and must not block.
	UserRootExported func(roots.UserRootEnd)
}

// Provider serves machines' NFS roots. It is safe for concurrent use.
type Provider struct {
	cfg Config
	log hclog.Logger
	mnt Mounter

	mu   sync.Mutex
	live map[string]*state // exported machines, by ID
	held map[string]bool   // machines whose roots Hold holds
}

// New returns a Provider.
func New(cfg Config) (*Provider, error) {
	if !filepath.IsAbs(cfg.Dir) || cfg.Images == nil || cfg.Exporter == nil || !cfg.ServerAddr.IsValid() {
		return nil, errors.New("rootnfs: Dir (absolute), Images, Exporter and ServerAddr are required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("rootnfs: %w", err)
	}
	if cfg.ServerPort == 0 {
		cfg.ServerPort = 2049
	}
	p := &Provider{cfg: cfg, log: cfg.Logger, mnt: cfg.Mounter, live: map[string]*state{}, held: map[string]bool{}}
	if p.mnt == nil {
		p.mnt = KernelMounter{}
	}
	if p.log == nil {
		p.log = hclog.NewNullLogger()
	}
	p.log = p.log.Named("rootnfs")
	return p, nil
}

// ExportName is a machine's name in the pseudo root.
func ExportName(machineID string) string { return machineID[:min(len(machineID), 16)] }

// Prepare gives the machine its export for this boot and returns the
// agent's plan. NFS roots need a tunnel (req.Tunnel). The plan is of a
// kind the provider serves, nfs or volatile via NFS (package roots routes
// by kind).
//
// A user's root (req.Key, a per-user plan) is kept and exported under its
// key, to the holder's tunnel address; the user roots the machine was
// given at earlier boots are withdrawn.
//
// The export is written under the provider's lock but waited for outside
// it, so that the exports of machines booting together are served by one
// reload of ganesha (nfs.Ganesha.WriteExports), not one reload each.
func (p *Provider) Prepare(ctx context.Context, req roots.Request) (wire.RootPlan, map[string][]byte, error) {
	p.mu.Lock()
	plan, wait, err := p.prepareLocked(ctx, req)
	p.mu.Unlock()
	if err != nil {
		return wire.RootPlan{}, nil, err
	}
	if err := wait(ctx); err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("nfs root: export: %w", err)
	}
	return plan, nil, nil
}

func (p *Provider) prepareLocked(ctx context.Context, req roots.Request) (wire.RootPlan, func(context.Context) error, error) {
	id := req.RootKey()
	volatile := req.Plan.Kind == wire.RootVolatile
	if !idPattern.MatchString(id) {
		return wire.RootPlan{}, nil, fmt.Errorf("machine ID %q: %w", id, ErrBadName)
	}
	if req.Tunnel == nil {
		return wire.RootPlan{}, nil, ErrNeedsTunnel
	}
	client, err := netip.ParsePrefix(req.Tunnel.Address)
	if err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("nfs root: tunnel address %q: %w", req.Tunnel.Address, err)
	}
	name := req.Plan.Params[wire.ImageParam]
	if name == "" {
		return wire.RootPlan{}, nil, ErrNoImage
	}

	if p.held[id] {
		return wire.RootPlan{}, nil, fmt.Errorf("nfs root of %.12s is held for a backup or a capture; retry shortly: %w", id, roots.ErrInUse)
	}
	st, err := p.load(id)
	if errors.Is(err, ErrNotFound) {
		st, err = &state{MachineID: id}, nil
	}
	if err != nil {
		return wire.RootPlan{}, nil, err
	}
	base := st.Base
	if volatile {
		base = ""
	}
	im, err := p.cfg.Images.Resolve(name, base)
	if err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("root image: %w", err)
	}
	lower := im.Digest
	if !volatile && st.Base != "" && st.Base != im.Digest {
		return wire.RootPlan{}, nil, fmt.Errorf("%w: its root's changes were made on base sha256:%.12s, image %s is now sha256:%.12s; "+
			"`sealroot machine upgrade %.12s` moves it to the new base keeping the changes as a snapshot, `sealroot machine reset %.12s` drops them", ErrImageChanged, st.Base, name, im.Digest, id, id)
	}
	if err := p.mountLocked(ctx, st, lower, volatile); err != nil {
		return wire.RootPlan{}, nil, err
	}
	if !volatile {
		st.Base = lower
	}
	if st.ExportID == 0 {
		if st.ExportID, err = p.freeExportID(); err != nil {
			return wire.RootPlan{}, nil, err
		}
	}
	st.Client, st.Exported = client.Addr(), true
	st.Holder, st.User, st.Exchange = "", "", ""
	if id != req.MachineID {
		st.Holder, st.User, st.Exchange = req.MachineID, req.User, req.Exchange
	}
	// The machine boots again: the user roots it mounted before are no
	// longer its own.
	if err := p.withdrawHeldLocked(ctx, req.MachineID, id); err != nil {
		return wire.RootPlan{}, nil, err
	}
	if err := p.save(st); err != nil {
		return wire.RootPlan{}, nil, err
	}
	p.live[id] = st
	wait, err := p.cfg.Exporter.WriteExports(p.exportsLocked())
	if err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("nfs root: export: %w", err)
	}
	p.log.Info("root exported", "root", id, "machine", req.MachineID, "export", ExportName(id), "base", lower[:12], "volatile", volatile, "client", st.Client)
	p.exportedLocked(st)
	plan := wire.RootPlan{Kind: req.Plan.Kind, Init: req.Plan.Init, Params: map[string]string{
		wire.NFSServer: p.cfg.ServerAddr.String(), wire.NFSPath: "/" + ExportName(id), wire.NFSVersion: Version,
		wire.NFSPort: strconv.Itoa(int(p.cfg.ServerPort)),
	}}
	if volatile {
		plan.Params[wire.VolatileVia] = wire.ViaNFS
	}
	return plan, wait, nil
}

// withdrawLocked stops exporting st's root. The root stays mounted, in
// the server's mount namespace only: ganesha holds files of a withdrawn
// export until their NFSv4 leases expire, and an overlay's upper cannot
// be mounted twice.
func (p *Provider) withdrawLocked(ctx context.Context, st *state) error {
	if _, ok := p.live[st.MachineID]; ok {
		delete(p.live, st.MachineID)
		if err := p.setExportsLocked(ctx); err != nil {
			return fmt.Errorf("nfs root: withdraw export: %w", err)
		}
	}
	st.Exported = false
	return p.save(st)
}

// Release withdraws machineID's export, if any, and the exports of the
// user roots it holds.
func (p *Provider) Release(ctx context.Context, machineID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.releaseLocked(ctx, machineID), p.withdrawHeldLocked(ctx, machineID, ""))
}

func (p *Provider) releaseLocked(ctx context.Context, id string) error {
	st, ok := p.live[id]
	if !ok {
		return nil
	}
	if err := p.withdrawLocked(ctx, st); err != nil {
		return err
	}
	p.log.Info("root withdrawn", "machine", id)
	return nil
}

// Restore exports again the roots that were exported when the server
// stopped, mounting them if needed. A root that cannot be restored (its
// base changed, say) is logged and left withdrawn. It returns how many
// roots are exported.
func (p *Provider) Restore(ctx context.Context) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	states, err := p.states()
	if err != nil {
		return 0, err
	}
	for _, st := range states {
		if !st.Exported {
			continue
		}
		if err := p.mountLocked(ctx, st, st.Lower, st.Volatile); err != nil {
			p.log.Error("root not restored", "machine", st.MachineID, "error", err)
			st.Exported = false
			p.save(st)
			continue
		}
		p.live[st.MachineID] = st
	}
	if err := p.setExportsLocked(ctx); err != nil {
		return 0, fmt.Errorf("nfs roots: restore exports: %w", err)
	}
	return len(p.live), nil
}

// Close unmounts every root; stop ganesha first. Exported roots stay
// recorded as exported, so Restore brings them back.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	states, err := p.states()
	errs := []error{err}
	for _, st := range states {
		errs = append(errs, p.unmount(p.root(st.MachineID)))
	}
	p.live = map[string]*state{}
	return errors.Join(errs...)
}

// exportsLocked is the export list ganesha serves, in ID order.
func (p *Provider) exportsLocked() []nfs.Export {
	out := make([]nfs.Export, 0, len(p.live))
	for id, st := range p.live {
		out = append(out, nfs.Export{ID: st.ExportID, Path: p.root(id), Name: ExportName(id), Client: st.Client, ReadOnly: st.Volatile})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Exports returns the exports served now, by machine ID.
func (p *Provider) Exports() map[string]nfs.Export {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]nfs.Export, len(p.live))
	for id, st := range p.live {
		out[id] = nfs.Export{ID: st.ExportID, Path: p.root(id), Name: ExportName(id), Client: st.Client, ReadOnly: st.Volatile}
	}
	return out
}
