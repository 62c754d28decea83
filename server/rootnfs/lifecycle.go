package rootnfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/wire"
)

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
func (p *Provider) Reset(ctx context.Context, machineID string, _ wire.RootPlan) error {
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
	if p.held[id] {
		return fmt.Errorf("nfs root of %.12s is held for a backup or a capture; retry shortly: %w", id, roots.ErrInUse)
	}
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

var _ roots.Upgrader = (*Provider)(nil)

// Upgrade moves the machine's root onto base: the old changes are saved
// as snapshot keepAs (unless that is "" or there are none) and the
// machine's next boot starts with no changes over base.
func (p *Provider) Upgrade(ctx context.Context, machineID, base, keepAs string) error {
	if _, err := p.cfg.Images.TreePath(base); err != nil {
		return err
	}
	if keepAs != "" {
		err := p.Snapshot(ctx, machineID, keepAs)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return p.withRoot(ctx, machineID, true, func(st *state) error {
		if err := p.clearUpper(machineID); err != nil {
			return err
		}
		st.Base = base
		return p.save(st)
	})
}

// RootBase returns the base the machine's changes are made on; "" when
// it has none.
func (p *Provider) RootBase(machineID string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.load(machineID)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return st.Base, nil
}

// SnapshotInfo lists the machine's snapshots with their bases.
func (p *Provider) SnapshotInfo(machineID string) ([]roots.Snapshot, error) {
	names, err := p.Snapshots(machineID)
	if err != nil {
		return nil, err
	}
	out := make([]roots.Snapshot, 0, len(names))
	for _, n := range names {
		dir := p.snapshot(machineID, n)
		b, err := os.ReadFile(filepath.Join(dir, "base"))
		if err != nil {
			return nil, fmt.Errorf("nfs root snapshot %s: %w", n, err)
		}
		s := roots.Snapshot{Name: n, Base: string(b)}
		if fi, err := os.Stat(dir); err == nil {
			s.Created = fi.ModTime().UTC()
		}
		out = append(out, s)
	}
	return out, nil
}

// DeleteSnapshot removes the machine's snapshot name.
func (p *Provider) DeleteSnapshot(_ context.Context, machineID, name string) error {
	if !idPattern.MatchString(machineID) || !snapPattern.MatchString(name) {
		return fmt.Errorf("snapshot %q of %q: %w", name, machineID, ErrBadName)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := p.snapshot(machineID, name)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("snapshot %s of %.12s: %w", name, machineID, ErrNotFound)
	}
	return os.RemoveAll(dir)
}
