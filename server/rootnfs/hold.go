package rootnfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/roots"
)

var (
	_ roots.Holder   = (*Provider)(nil)
	_ roots.Merger   = (*Provider)(nil)
	_ roots.Attacher = (*Provider)(nil)
)

// Attached reports whether the machine is using its export: its tunnel
// peer is active (Config.Active; without it, every exported machine).
// For a user's root, machineID is the root's key and its holder's peer
// counts.
func (p *Provider) Attached(machineID string) bool {
	p.mu.Lock()
	st, exported := p.live[machineID]
	p.mu.Unlock()
	return exported && (p.cfg.Active == nil || p.cfg.Active(st.machine()))
}

// Hold holds the machine's NFS root still for a copy: it refuses with
// roots.ErrInUse while the machine is exported and active (Config.Active),
// otherwise withdraws the export, unmounts the overlay and refuses every
// Prepare and lifecycle operation of the machine until release. A
// machine without an NFS root is held too.
func (p *Provider) Hold(ctx context.Context, machineID string) (func(), error) {
	id := machineID
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("machine ID %q: %w", id, ErrBadName)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[id] {
		return nil, fmt.Errorf("nfs root of %.12s is already held for a backup or a capture: %w", id, roots.ErrInUse)
	}
	st, err := p.load(id)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if live, ok := p.live[id]; ok {
			if p.cfg.Active == nil || p.cfg.Active(live.machine()) {
				return nil, fmt.Errorf("machine %.12s: its NFS root is exported and its tunnel peer is active: %w", id, roots.ErrInUse)
			}
			st = live
		}
		if err := p.detachLocked(ctx, st); err != nil {
			return nil, err
		}
	}
	p.held[id] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			delete(p.held, id)
			p.mu.Unlock()
		})
	}, nil
}

// Merged shows fn the machine's root as the machine saw it, read-only:
// its upper over the tree of the base it was made on (nfs.MountMerged,
// mounted at Dir/<id>/merged for the call). The machine must be held
// (Hold), so that its upper does not change meanwhile. It fails with
// ErrNotFound when the machine has no persistent NFS root.
func (p *Provider) Merged(ctx context.Context, machineID string, fn func(dir string) error) error {
	p.mu.Lock()
	held := p.held[machineID]
	p.mu.Unlock()
	if !held {
		return fmt.Errorf("nfs root of %.12s is not held: hold it before merging it", machineID)
	}
	st, err := p.load(machineID)
	if err != nil {
		return err
	}
	if st.Base == "" {
		return fmt.Errorf("nfs root of %.12s has no persistent upper (never booted persistent, or reset): %w", machineID, ErrNotFound)
	}
	tree, err := p.cfg.Images.TreePath(st.Base)
	if err != nil {
		return fmt.Errorf("root base: %w", err)
	}
	dir := filepath.Join(p.dir(machineID), "merged")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("nfs root: %w", err)
	}
	if err := nfs.MountMerged(p.upper(machineID), tree, dir); err != nil {
		return err
	}
	err = fn(dir)
	if uerr := nfs.Unmount(dir); uerr != nil {
		return errors.Join(err, uerr)
	}
	return errors.Join(err, os.Remove(dir))
}
