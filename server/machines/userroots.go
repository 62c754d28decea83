package machines

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/users"
	"github.com/sealroot/sealroot/wire"
)

var _ api.UserRootService = (*Manager)(nil)

// userRootPlan is the plan the lifecycle operations of the user's root
// keyed key go by: per-user roots are iSCSI volumes or NFS overlays keyed
// by roots.UserRootKey; a user who has an NFS root has it operated on,
// else the iSCSI provider answers (ErrNotFound when it has none either).
func (m *Manager) userRootPlan(key string) wire.RootPlan {
	if m.roots.HasRoot(roots.KindNFS, key) {
		return wire.RootPlan{Kind: wire.RootNFS}
	}
	return wire.RootPlan{Kind: wire.RootISCSI}
}

func (m *Manager) leaseStore() (store.LeaseStore, error) {
	ls, ok := m.store.(store.LeaseStore)
	if !ok {
		return nil, fmt.Errorf("%w: this store keeps no user roots", api.ErrUnavailable)
	}
	return ls, nil
}

func (m *Manager) viewLease(ctx context.Context, l *store.UserLease) api.UserRoot {
	u := api.UserRoot{User: l.User, MachineID: l.MachineID, Since: l.Since, Boot: l.Boot}
	if mc, err := m.store.Machine(ctx, l.MachineID); err == nil {
		u.MachineName = mc.Name
	}
	return u
}

// UserRoots lists the user roots mounted now.
func (m *Manager) UserRoots(ctx context.Context) ([]api.UserRoot, error) {
	ls, err := m.leaseStore()
	if err != nil {
		return nil, err
	}
	leases, err := ls.UserLeases(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.UserRoot, len(leases))
	for i, l := range leases {
		out[i] = m.viewLease(ctx, l)
	}
	return out, nil
}

// FreeUserRoot ends user's lease (the operator's override: the machine
// is gone or hung) and withdraws the root's target from that machine, so
// that the user may log in elsewhere.
func (m *Manager) FreeUserRoot(ctx context.Context, user string) (*api.UserRoot, error) {
	ls, err := m.leaseStore()
	if err == nil {
		err = users.CheckName(user)
	}
	if err != nil {
		err = userError(err)
		m.record(ctx, "user-free", "", "user "+user, err)
		return nil, err
	}
	var out api.UserRoot
	err = m.change(ctx, "user-free", "", "user "+user, func() error {
		l, err := ls.FreeUserLease(ctx, user, "")
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("user %s holds no root on any machine: %w", user, api.ErrNotFound)
		}
		if err != nil {
			return err
		}
		out = m.viewLease(ctx, l)
		if m.roots != nil {
			return toAPI(m.roots.Release(ctx, roots.UserRootKey(user)))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// userRootOp checks user, refuses while a machine mounts the root when
// idle is set, records action and runs op on the root's key.
func (m *Manager) userRootOp(ctx context.Context, action, user, reason string, idle bool, op func(key string) error) error {
	err := users.CheckName(user)
	if err == nil && idle {
		err = m.userRootIdle(ctx, user)
	}
	if err == nil && m.roots == nil {
		err = fmt.Errorf("%w: no root storage on this server", api.ErrUnavailable)
	}
	if err != nil {
		err = userError(err)
		m.record(ctx, action, "", "user "+user+" "+reason, err)
		return err
	}
	return m.change(ctx, action, "", "user "+user+" "+reason, func() error {
		return toAPI(op(roots.UserRootKey(user)))
	})
}

// userRootIdle refuses while a machine holds user's root.
func (m *Manager) userRootIdle(ctx context.Context, user string) error {
	ls, err := m.leaseStore()
	if err != nil {
		return err
	}
	l, err := ls.UserLease(ctx, user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	v := m.viewLease(ctx, l)
	return fmt.Errorf("the root of user %s is in use on machine %s (%.12s): free it first (sealroot user free %s): %w",
		user, v.MachineName, v.MachineID, user, api.ErrConflict)
}

// ResetUserRoot puts user's root back to its image.
func (m *Manager) ResetUserRoot(ctx context.Context, user string) error {
	return m.userRootOp(ctx, "user-root-reset", user, "", true, func(key string) error {
		return m.roots.Reset(ctx, key, m.userRootPlan(key))
	})
}

// SnapshotUserRoot saves user's root as name.
func (m *Manager) SnapshotUserRoot(ctx context.Context, user, name string) error {
	return m.userRootOp(ctx, "user-root-snapshot", user, "snapshot "+name, false, func(key string) error {
		return m.roots.Snapshot(ctx, key, m.userRootPlan(key), name)
	})
}

// RollbackUserRoot replaces user's root with snapshot name.
func (m *Manager) RollbackUserRoot(ctx context.Context, user, name string) error {
	return m.userRootOp(ctx, "user-root-rollback", user, "snapshot "+name, true, func(key string) error {
		return m.roots.Rollback(ctx, key, m.userRootPlan(key), name)
	})
}

// UserRootSnapshots lists the snapshots of user's root.
func (m *Manager) UserRootSnapshots(ctx context.Context, user string) ([]api.Snapshot, error) {
	if err := users.CheckName(user); err != nil {
		return nil, userError(err)
	}
	if m.roots == nil {
		return nil, fmt.Errorf("%w: no root storage on this server", api.ErrUnavailable)
	}
	ss, err := m.roots.Snapshots(roots.UserRootKey(user), m.userRootPlan(roots.UserRootKey(user)))
	if err != nil {
		return nil, toAPI(err)
	}
	versions := m.versionsByDigest()
	out := make([]api.Snapshot, len(ss))
	for i, s := range ss {
		out[i] = api.Snapshot{Name: s.Name, Base: s.Base, Image: versions[s.Base], Created: s.Created, Size: s.Size}
	}
	return out, nil
}
