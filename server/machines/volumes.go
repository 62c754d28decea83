package machines

import (
	"context"

	"github.com/sealroot/sealroot/server/store"
)

// ResetVolume puts the machine's root back to its image. When the
// machine's iSCSI root now names another image, its volume is deleted
// instead and made from that image at the next boot.
func (m *Manager) ResetVolume(ctx context.Context, ref string) error {
	return m.volumeOp(ctx, "volume-reset", ref, "", func(ctx context.Context, mc *store.Machine) error {
		return m.roots.Reset(ctx, mc.ID, mc.Root)
	})
}

// SnapshotVolume saves the machine's root as name.
func (m *Manager) SnapshotVolume(ctx context.Context, ref, name string) error {
	return m.volumeOp(ctx, "volume-snapshot", ref, "snapshot "+name, func(ctx context.Context, mc *store.Machine) error {
		return m.roots.Snapshot(ctx, mc.ID, mc.Root, name)
	})
}

// RollbackVolume replaces the machine's root with snapshot name.
func (m *Manager) RollbackVolume(ctx context.Context, ref, name string) error {
	return m.volumeOp(ctx, "volume-rollback", ref, "snapshot "+name, func(ctx context.Context, mc *store.Machine) error {
		return m.roots.Rollback(ctx, mc.ID, mc.Root, name)
	})
}

// DeleteRoot removes the machine's roots from the server, with their
// snapshots. The machine gets a new root from its image at its next
// boot.
func (m *Manager) DeleteRoot(ctx context.Context, ref string) error {
	return m.volumeOp(ctx, "root-delete", ref, "", func(ctx context.Context, mc *store.Machine) error {
		return m.roots.Delete(ctx, mc.ID)
	})
}

// volumeOp resolves ref, records action and then withdraws the machine's
// root, so its volume is closed, and runs op. The machine's Root is its
// effective root (its group's when it is in one). A boot in flight that
// prepares the root meanwhile is refused by the volume (volume.ErrBusy),
// or finds its root withdrawn and attests again.
func (m *Manager) volumeOp(ctx context.Context, action, ref, reason string, op func(context.Context, *store.Machine) error) error {
	mc, err := m.resolve(ctx, ref)
	if err == nil {
		mc.Root, err = store.EffectiveRoot(ctx, m.store, mc)
	}
	if err != nil {
		err = toAPI(err)
		m.record(ctx, action, idOf(mc), reason, err)
		return err
	}
	return m.change(ctx, action, mc.ID, reason, func() error {
		if err := m.roots.Release(ctx, mc.ID); err != nil {
			return toAPI(err)
		}
		return toAPI(op(ctx, mc))
	})
}
