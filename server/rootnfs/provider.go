// Package rootnfs serves each attested machine its root over NFSv4 from
// nfs-ganesha (package nfs). It implements the root provider of package
// attest for the kinds "nfs" and "volatile".
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
package rootnfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"

	"github.com/sealroot/sealroot/internal/atomicfile"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

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
	ErrNotFound = errors.New("not found")
	// ErrExists means a snapshot of that name exists.
	ErrExists = errors.New("already exists")
	// ErrBadName means a machine ID or snapshot name is malformed.
	ErrBadName = errors.New("invalid name")
)

// Images finds images and their trees; *image.Store implements it.
type Images interface {
	Get(name string) (*image.Image, error)
	TreePath(digest string) (string, error)
}

// Exporter serves a set of exports; *nfs.Ganesha implements it.
type Exporter interface {
	SetExports(ctx context.Context, exports []nfs.Export) error
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
	Logger     hclog.Logger // default discards
}

// Provider serves machines' NFS roots. It is safe for concurrent use.
type Provider struct {
	cfg Config
	log hclog.Logger

	mu   sync.Mutex
	live map[string]*state // exported machines, by ID
}

// state is a machine's NFS root, kept in Dir/<id>/state.json.
type state struct {
	MachineID string `json:"machine_id"`
	// Base is the digest of the base the upper was made on; "" until
	// the first persistent boot and after a reset.
	Base string `json:"base,omitempty"`
	// Lower is the digest of the tree mounted at root now.
	Lower    string `json:"lower,omitempty"`
	Volatile bool   `json:"volatile,omitempty"`
	// ExportID is ganesha's Export_Id, fixed for the machine's lifetime.
	ExportID uint16     `json:"export_id"`
	Client   netip.Addr `json:"client"`
	Exported bool       `json:"exported"`
}

var (
	idPattern   = regexp.MustCompile(`^[0-9a-f]{16,64}$`)
	snapPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

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
	p := &Provider{cfg: cfg, log: cfg.Logger, live: map[string]*state{}}
	if p.log == nil {
		p.log = hclog.NewNullLogger()
	}
	p.log = p.log.Named("rootnfs")
	return p, nil
}

// ExportName is a machine's name in the pseudo root.
func ExportName(machineID string) string { return machineID[:min(len(machineID), 16)] }

func (p *Provider) dir(id string) string   { return filepath.Join(p.cfg.Dir, id) }
func (p *Provider) upper(id string) string { return filepath.Join(p.cfg.Dir, id, "upper") }
func (p *Provider) work(id string) string  { return filepath.Join(p.cfg.Dir, id, "work") }
func (p *Provider) root(id string) string  { return filepath.Join(p.cfg.Dir, id, "root") }
func (p *Provider) snapshot(id, name string) string {
	return filepath.Join(p.cfg.Dir, id, "snapshots", name)
}

// Prepare gives machine m its export for this boot and returns the
// agent's plan. tunnel is the machine's tunnel plan; NFS roots need one.
// A root of another kind is returned as is, and the machine's export, if
// any, is withdrawn.
func (p *Provider) Prepare(ctx context.Context, m *store.Machine, tunnel *wire.TunnelPlan) (wire.RootPlan, map[string][]byte, error) {
	volatile := m.Root.Kind == wire.RootVolatile
	if m.Root.Kind != wire.RootNFS && !volatile {
		return m.Root, nil, p.Release(ctx, m.ID)
	}
	if !idPattern.MatchString(m.ID) {
		return wire.RootPlan{}, nil, fmt.Errorf("machine ID %q: %w", m.ID, ErrBadName)
	}
	if tunnel == nil {
		return wire.RootPlan{}, nil, ErrNeedsTunnel
	}
	client, err := netip.ParsePrefix(tunnel.Address)
	if err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("nfs root: tunnel address %q: %w", tunnel.Address, err)
	}
	name := m.Root.Params[wire.ImageParam]
	if name == "" {
		return wire.RootPlan{}, nil, ErrNoImage
	}
	im, err := p.cfg.Images.Get(name)
	if err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("root image: %w", err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.load(m.ID)
	if errors.Is(err, ErrNotFound) {
		st, err = &state{MachineID: m.ID}, nil
	}
	if err != nil {
		return wire.RootPlan{}, nil, err
	}
	lower := im.Digest
	if !volatile && st.Base != "" && st.Base != im.Digest {
		return wire.RootPlan{}, nil, fmt.Errorf("%w: its root's changes were made on base sha256:%.12s, image %s is now sha256:%.12s; "+
			"`sealroot machine reset %.12s` starts over on the new base (dropping the changes)", ErrImageChanged, st.Base, name, im.Digest, m.ID)
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
	if err := p.save(st); err != nil {
		return wire.RootPlan{}, nil, err
	}
	p.live[m.ID] = st
	if err := p.cfg.Exporter.SetExports(ctx, p.exportsLocked()); err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("nfs root: export: %w", err)
	}
	p.log.Info("root exported", "machine", m.ID, "export", ExportName(m.ID), "base", lower[:12], "volatile", volatile, "client", st.Client)
	plan := wire.RootPlan{Kind: m.Root.Kind, Init: m.Root.Init, Params: map[string]string{
		wire.NFSServer: p.cfg.ServerAddr.String(), wire.NFSPath: "/" + ExportName(m.ID), wire.NFSVersion: Version,
		wire.NFSPort: strconv.Itoa(int(p.cfg.ServerPort)),
	}}
	if volatile {
		plan.Params[wire.VolatileVia] = wire.ViaNFS
	}
	return plan, nil, nil
}

// mountLocked makes st's root the view wanted: an overlay of lower under
// the machine's upper, or a read-only bind of lower when volatile.
func (p *Provider) mountLocked(ctx context.Context, st *state, lower string, volatile bool) error {
	id, root := st.MachineID, p.root(st.MachineID)
	mounted, err := nfs.Mounted(root)
	if err != nil {
		return err
	}
	if mounted && st.Lower == lower && st.Volatile == volatile {
		return nil
	}
	if mounted {
		if err := p.detachLocked(ctx, st); err != nil {
			return err
		}
	}
	tree, err := p.cfg.Images.TreePath(lower)
	if err != nil {
		return fmt.Errorf("root base: %w", err)
	}
	for _, d := range []string{p.upper(id), p.work(id), root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("nfs root: %w", err)
		}
	}
	if volatile {
		err = nfs.BindReadOnly(tree, root)
	} else {
		err = nfs.MountOverlay(tree, p.upper(id), p.work(id), root)
	}
	switch {
	case err == nil:
	case errors.Is(err, nfs.ErrBaseChanged):
		p.log.Error("refusing a root whose base changed on disk", "machine", id, "base", lower, "error", err)
		return fmt.Errorf("nfs root of %.12s: %w", id, err)
	case errors.Is(err, unix.EBUSY):
		// The upper of a lazily detached overlay is still held: nfs-ganesha
		// keeps files of the machine's previous root open until their
		// leases expire. The agent's retry will find it free.
		return fmt.Errorf("nfs root of %.12s: its previous mount is still held by nfs-ganesha until the NFSv4 leases of its last boot expire; retry shortly: %w", id, err)
	default:
		return fmt.Errorf("nfs root of %.12s: %w", id, err)
	}
	st.Lower, st.Volatile = lower, volatile
	return nil
}

// withdrawLocked stops exporting st's root. The root stays mounted, in
// the server's mount namespace only: ganesha holds files of a withdrawn
// export until their NFSv4 leases expire, and an overlay's upper cannot
// be mounted twice.
func (p *Provider) withdrawLocked(ctx context.Context, st *state) error {
	if _, ok := p.live[st.MachineID]; ok {
		delete(p.live, st.MachineID)
		if err := p.cfg.Exporter.SetExports(ctx, p.exportsLocked()); err != nil {
			return fmt.Errorf("nfs root: withdraw export: %w", err)
		}
	}
	st.Exported = false
	return p.save(st)
}

// detachLocked withdraws st's root and unmounts it, lazily if ganesha
// still holds files on it. Callers then mount a new upper or none.
func (p *Provider) detachLocked(ctx context.Context, st *state) error {
	if err := p.withdrawLocked(ctx, st); err != nil {
		return err
	}
	st.Lower = ""
	return p.unmount(p.root(st.MachineID))
}

// unmount unmounts root if it is mounted, detaching it lazily when busy.
func (p *Provider) unmount(root string) error {
	mounted, err := nfs.Mounted(root)
	if err != nil || !mounted {
		return err
	}
	err = unix.Unmount(root, 0)
	if errors.Is(err, unix.EBUSY) {
		p.log.Debug("root busy; detaching it lazily", "root", root)
		err = unix.Unmount(root, unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("nfs root: unmount %s: %w", root, err)
	}
	return nil
}

// Release withdraws machineID's export, if any.
func (p *Provider) Release(ctx context.Context, machineID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.releaseLocked(ctx, machineID)
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
	if err := p.cfg.Exporter.SetExports(ctx, p.exportsLocked()); err != nil {
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

// freeExportID returns the lowest export ID no machine holds.
func (p *Provider) freeExportID() (uint16, error) {
	states, err := p.states()
	if err != nil {
		return 0, err
	}
	used := map[uint16]bool{}
	for _, st := range states {
		used[st.ExportID] = true
	}
	for id := uint16(1); id != 0; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, errors.New("nfs roots: no free export ID (65535 machines)")
}

// Bases returns the digests of the bases the machines' roots and
// snapshots are made on or mount now; image GC keeps those.
func (p *Provider) Bases() (map[string]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	states, err := p.states()
	if err != nil {
		return nil, err
	}
	bases := map[string]bool{}
	for _, st := range states {
		for _, d := range []string{st.Base, st.Lower} {
			if d != "" {
				bases[d] = true
			}
		}
		snaps, err := filepath.Glob(filepath.Join(p.dir(st.MachineID), "snapshots", "*", "base"))
		if err != nil {
			return nil, err
		}
		for _, s := range snaps {
			b, err := os.ReadFile(s)
			if err != nil {
				return nil, fmt.Errorf("nfs root snapshot: %w", err)
			}
			bases[string(b)] = true
		}
	}
	return bases, nil
}

// InUse reports whether digest is one of Bases; true when they cannot be
// read, so that nothing is deleted when unsure.
func (p *Provider) InUse(digest string) bool {
	bases, err := p.Bases()
	return err != nil || bases[digest]
}

// Has reports whether the machine has an NFS root on the server.
func (p *Provider) Has(machineID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.load(machineID)
	return err == nil
}

// Reset drops the machine's changes: its next boot starts from its
// image's current base.
func (p *Provider) Reset(ctx context.Context, machineID string) error {
	return p.withRoot(ctx, machineID, true, func(st *state) error {
		if err := p.clearUpper(machineID); err != nil {
			return err
		}
		st.Base = ""
		return p.save(st)
	})
}

// Snapshot saves a copy of the machine's changes (and the base they were
// made on) as name.
func (p *Provider) Snapshot(ctx context.Context, machineID, name string) error {
	if !snapPattern.MatchString(name) {
		return fmt.Errorf("snapshot %q: %w", name, ErrBadName)
	}
	return p.withRoot(ctx, machineID, false, func(st *state) error {
		if st.Base == "" {
			return fmt.Errorf("machine %.12s has no changes to snapshot (not booted since its last reset): %w", machineID, ErrNotFound)
		}
		dst := p.snapshot(machineID, name)
		if _, err := os.Stat(dst); err == nil {
			return fmt.Errorf("snapshot %s: %w", name, ErrExists)
		}
		tmp := dst + ".tmp"
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			return err
		}
		if err := copyTree(ctx, p.upper(machineID), filepath.Join(tmp, "upper")); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "base"), []byte(st.Base), 0o600); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		return os.Rename(tmp, dst)
	})
}

// Rollback replaces the machine's changes with snapshot name's. The
// overlay index starts empty, which the kernel accepts: files copied up
// before are then addressed by their upper file handles.
func (p *Provider) Rollback(ctx context.Context, machineID, name string) error {
	if !snapPattern.MatchString(name) {
		return fmt.Errorf("snapshot %q: %w", name, ErrBadName)
	}
	return p.withRoot(ctx, machineID, true, func(st *state) error {
		src := p.snapshot(machineID, name)
		base, err := os.ReadFile(filepath.Join(src, "base"))
		if err != nil {
			return fmt.Errorf("snapshot %s of %.12s: %w", name, machineID, ErrNotFound)
		}
		if err := p.clearUpper(machineID); err != nil {
			return err
		}
		if err := copyTree(ctx, filepath.Join(src, "upper"), p.upper(machineID)); err != nil {
			return err
		}
		st.Base = string(base)
		return p.save(st)
	})
}

// Delete removes the machine's root and snapshots from the server.
func (p *Provider) Delete(ctx context.Context, machineID string) error {
	return p.withRoot(ctx, machineID, true, func(*state) error {
		return os.RemoveAll(p.dir(machineID))
	})
}

// Snapshots lists the machine's snapshot names.
func (p *Provider) Snapshots(machineID string) ([]string, error) {
	if !idPattern.MatchString(machineID) {
		return nil, fmt.Errorf("machine ID %q: %w", machineID, ErrBadName)
	}
	ents, err := os.ReadDir(filepath.Join(p.dir(machineID), "snapshots"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var names []string
	for _, e := range ents {
		if snapPattern.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, err
}

// withRoot withdraws the machine's root, unmounts it when the upper is
// about to be replaced, and runs fn on its state.
func (p *Provider) withRoot(ctx context.Context, id string, unmount bool, fn func(*state) error) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("machine ID %q: %w", id, ErrBadName)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.load(id)
	if err != nil {
		return err
	}
	if live, ok := p.live[id]; ok {
		st = live
	}
	withdraw := p.withdrawLocked
	if unmount {
		withdraw = p.detachLocked
	}
	if err := withdraw(ctx, st); err != nil {
		return err
	}
	return fn(st)
}

func (p *Provider) clearUpper(id string) error {
	for _, d := range []string{p.upper(id), p.work(id)} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("nfs root: %w", err)
		}
	}
	return nil
}

// copyTree copies src to dst (which must not exist) with everything an
// overlay upper holds: owners, modes, times, xattrs (trusted.overlay.*),
// whiteout devices and hard links; reflinked where the file system can.
func copyTree(ctx context.Context, src, dst string) error {
	out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", "--", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("copy %s: %w: %s", src, err, out)
	}
	return nil
}

func (p *Provider) load(id string) (*state, error) {
	data, err := os.ReadFile(filepath.Join(p.dir(id), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("nfs root of %.12s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("nfs root state: %w", err)
	}
	st := &state{}
	if err := json.Unmarshal(data, st); err != nil || st.MachineID != id {
		return nil, fmt.Errorf("nfs root state of %.12s is damaged: %v", id, err)
	}
	return st, nil
}

func (p *Provider) save(st *state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := p.dir(st.MachineID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("nfs root state: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		return fmt.Errorf("nfs root state: %w", err)
	}
	return nil
}

// states reads every machine's state.
func (p *Provider) states() ([]*state, error) {
	ents, err := os.ReadDir(p.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("nfs roots: %w", err)
	}
	var out []*state
	for _, e := range ents {
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		st, err := p.load(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
