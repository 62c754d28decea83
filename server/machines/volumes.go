package machines

import (
	"context"

	"github.com/sealroot/sealroot/server/store"
)

// ResetVolume puts the machine's root back to its image. When the
// machine's iSCSI root now names another image, its volume is deleted
// instead and made from that image at the next boot.
func (m *Manager) ResetVolume(ctx context.Context, ref string) error {
	mc, err := m.volumeOp(ctx, ref)
	if err == nil {
		err = m.roots.Reset(ctx, mc.ID, mc.Root)
	}
	err = toAPI(err)
	m.record(ctx, "volume-reset", idOf(mc), "", err)
	return err
}

// SnapshotVolume saves the machine's root as name.
func (m *Manager) SnapshotVolume(ctx context.Context, ref, name string) error {
	mc, err := m.volumeOp(ctx, ref)
	if err == nil {
		err = m.roots.Snapshot(ctx, mc.ID, mc.Root, name)
	}
	err = toAPI(err)
	m.record(ctx, "volume-snapshot", idOf(mc), "snapshot "+name, err)
	return err
}

// RollbackVolume replaces the machine's root with snapshot name.
func (m *Manager) RollbackVolume(ctx context.Context, ref, name string) error {
	mc, err := m.volumeOp(ctx, ref)
	if err == nil {
		err = m.roots.Rollback(ctx, mc.ID, mc.Root, name)
	}
	err = toAPI(err)
	m.record(ctx, "volume-rollback", idOf(mc), "snapshot "+name, err)
	return err
}

// DeleteRoot removes the machine's roots from the server, with their
// snapshots. The machine gets a new root from its image at its next
// boot.
func (m *Manager) DeleteRoot(ctx context.Context, ref string) error {
	mc, err := m.volumeOp(ctx, ref)
	if err == nil {
		err = m.roots.Delete(ctx, mc.ID)
	}
	err = toAPI(err)
	m.record(ctx, "root-delete", idOf(mc), "", err)
	return err
}

// volumeOp resolves ref and withdraws the machine's root, so its volume
// is closed. The machine's Root is its effective root (its group's when
// it is in one).
func (m *Manager) volumeOp(ctx context.Context, ref string) (*store.Machine, error) {
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	if mc.Root, err = store.EffectiveRoot(ctx, m.store, mc); err != nil {
		return mc, err
	}
	return mc, m.roots.Release(ctx, mc.ID)
}
