package rootnfs

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/server/nfs"
)

// Mounter is the provider's seam to the kernel's mount table: everything
// it mounts or unmounts goes through it, so the logic above it runs in
// tests without root (a fake Mounter). KernelMounter is the real one.
type Mounter interface {
	// Mounted reports whether target is a mount point.
	Mounted(target string) (bool, error)
	// Overlay mounts an NFS-exportable overlay at target: lower read-only
	// under upper, with work as the overlay's work directory. A lower other
	// than the one upper was made on fails wrapping nfs.ErrBaseChanged.
	Overlay(lower, upper, work, target string) error
	// BindReadOnly mounts dir again at target, read-only.
	BindReadOnly(dir, target string) error
	// Unmount unmounts target; lazy detaches it even while files on it
	// are open (MNT_DETACH). A busy target fails wrapping unix.EBUSY.
	Unmount(target string, lazy bool) error
}

// KernelMounter mounts for real (package nfs, mount(2)); it needs
// CAP_SYS_ADMIN in the server's mount namespace.
type KernelMounter struct{}

// Mounted implements Mounter.
func (KernelMounter) Mounted(target string) (bool, error) { return nfs.Mounted(target) }

// Overlay implements Mounter.
func (KernelMounter) Overlay(lower, upper, work, target string) error {
	return nfs.MountOverlay(lower, upper, work, target)
}

// BindReadOnly implements Mounter.
func (KernelMounter) BindReadOnly(dir, target string) error { return nfs.BindReadOnly(dir, target) }

// Unmount implements Mounter.
func (KernelMounter) Unmount(target string, lazy bool) error {
	flags := 0
	if lazy {
		flags = unix.MNT_DETACH
	}
	return unix.Unmount(target, flags)
}

// mountLocked makes st's root the view wanted: an overlay of lower under
// the machine's upper, or a read-only bind of lower when volatile.
func (p *Provider) mountLocked(ctx context.Context, st *state, lower string, volatile bool) error {
	id, root := st.MachineID, p.root(st.MachineID)
	mounted, err := p.mnt.Mounted(root)
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
		err = p.mnt.BindReadOnly(tree, root)
	} else {
		err = p.mnt.Overlay(tree, p.upper(id), p.work(id), root)
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
	mounted, err := p.mnt.Mounted(root)
	if err != nil || !mounted {
		return err
	}
	err = p.mnt.Unmount(root, false)
	if errors.Is(err, unix.EBUSY) {
		p.log.Debug("root busy; detaching it lazily", "root", root)
		err = p.mnt.Unmount(root, true)
	}
	if err != nil {
		return fmt.Errorf("nfs root: unmount %s: %w", root, err)
	}
	return nil
}
