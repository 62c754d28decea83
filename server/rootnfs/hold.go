package rootnfs

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sealroot/sealroot/server/roots"
)

var _ roots.Holder = (*Provider)(nil)

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
			if p.cfg.Active == nil || p.cfg.Active(id) {
				return nil, fmt.Errorf("machine %.12s is using its NFS root (exported, its tunnel peer active): power it off first: %w", id, roots.ErrInUse)
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

// Paths returns the directories a capture merges for a held machine: its
// upper and the tree of the base it was made on. It fails with
// ErrNotFound when the machine has no persistent NFS root.
func (p *Provider) Paths(machineID string) (upper, lower string, err error) {
	st, err := p.load(machineID)
	if err != nil {
		return "", "", err
	}
	if st.Base == "" {
		return "", "", fmt.Errorf("nfs root of %.12s has no persistent upper (never booted persistent, or reset): %w", machineID, ErrNotFound)
	}
	tree, err := p.cfg.Images.TreePath(st.Base)
	if err != nil {
		return "", "", fmt.Errorf("root base: %w", err)
	}
	return p.upper(machineID), tree, nil
}
