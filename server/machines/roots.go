package machines

import (
	"context"
	"fmt"
	"reflect"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// SetRoot sets the root plan of the machine's next boot. A root other
// than none must name an existing image. A machine in a group takes its
// group's root; SetRoot refuses it.
func (m *Manager) SetRoot(ctx context.Context, ref string, root wire.RootPlan) (*api.Machine, error) {
	reason := fmt.Sprintf("root %s %v", root.Kind, root.Params)
	setRoot := func(mc *store.Machine) error {
		if mc.Group != "" {
			return fmt.Errorf("machine %.12s is in group %s, whose root it mounts: set the group's root, or take the machine out of the group first: %w",
				mc.ID, mc.Group, api.ErrConflict)
		}
		mc.Root = root
		return nil
	}
	mc, err := m.resolve(ctx, ref)
	if err == nil {
		err = m.checkRoot(root)
	}
	if err == nil {
		dry := *mc
		err = setRoot(&dry)
	}
	if err != nil {
		err = toAPI(err)
		m.record(ctx, "set-root", idOf(mc), reason, err)
		return nil, err
	}
	err = m.change(ctx, "set-root", mc.ID, reason, func() (err error) {
		mc, err = m.store.UpdateMachine(ctx, mc.ID, setRoot)
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	return ViewMachine(mc), nil
}

func (m *Manager) checkRoot(root wire.RootPlan) error {
	switch root.Kind {
	case wire.RootNone:
		return nil
	case wire.RootISCSI, wire.RootNFS, wire.RootVolatile:
		if via := root.Params[wire.VolatileVia]; root.Kind == wire.RootVolatile && via != "" && via != wire.ViaNFS && via != wire.ViaISCSI {
			return fmt.Errorf("%w: a volatile root reads its base via nfs or iscsi, not %q", api.ErrInvalid, via)
		}
		if pu, ok := root.Params[wire.PerUserParam]; ok && (pu != "true" || (root.Kind != wire.RootISCSI && root.Kind != wire.RootNFS)) {
			return fmt.Errorf("%w: per-user roots are iscsi or nfs roots with %s=true", api.ErrInvalid, wire.PerUserParam)
		}
		name := root.Params[wire.ImageParam]
		if name == "" {
			return fmt.Errorf("%w: a %s root needs an image (root parameter \"image\")", api.ErrInvalid, root.Kind)
		}
		_, err := m.images.Get(name)
		return err
	}
	return fmt.Errorf("root kind %q: %w: want %s, %s, %s or %s", root.Kind, api.ErrInvalid,
		wire.RootNone, wire.RootISCSI, wire.RootNFS, wire.RootVolatile)
}

// Groups lists the groups.
func (m *Manager) Groups(ctx context.Context) ([]*api.Group, error) {
	gs, err := m.store.Groups(ctx)
	if err != nil {
		return nil, err
	}
	return ViewGroups(gs), nil
}

// SetGroupRoot creates group name, or replaces its root plan: the root
// its machines mount from their next boot.
func (m *Manager) SetGroupRoot(ctx context.Context, name string, root wire.RootPlan) (*api.Group, error) {
	return m.setGroupRoot(ctx, name, root, nil)
}

// setGroupRoot is SetGroupRoot; with from set, only while the group's
// root is still *from (a plan derived from it is refused with
// api.ErrConflict once another change got in), decided in the store
// transaction that stores it.
func (m *Manager) setGroupRoot(ctx context.Context, name string, root wire.RootPlan, from *wire.RootPlan) (*api.Group, error) {
	g := &store.Group{Name: name, Root: root}
	reason := fmt.Sprintf("group %s root %s %v", name, root.Kind, root.Params)
	if err := toAPI(m.checkRoot(root)); err != nil {
		m.record(ctx, "group-set-root", "", reason, err)
		return nil, err
	}
	err := m.change(ctx, "group-set-root", "", reason, func() error {
		// One store transaction: a menu set meanwhile is kept, not
		// overwritten with the one read before.
		stored, err := m.store.UpdateGroup(ctx, name, func(x *store.Group, found bool) error {
			if from != nil && (!found || !reflect.DeepEqual(x.Root, *from)) {
				return fmt.Errorf("%w: group %s's root changed to %s %v meanwhile", api.ErrConflict, name, x.Root.Kind, x.Root.Params)
			}
			x.Root = root // a root change keeps the group's menu
			return nil
		})
		if err == nil {
			g = stored
		}
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	return ViewGroup(g), nil
}

// DeleteGroup removes an empty group.
func (m *Manager) DeleteGroup(ctx context.Context, name string) error {
	return m.change(ctx, "group-delete", "", "group "+name, func() error { return toAPI(m.store.DeleteGroup(ctx, name)) })
}

// SetGroup puts the machine in group (which must exist), or takes it out
// of its group when group is "". It mounts the group's root, or its own
// again, from its next boot.
func (m *Manager) SetGroup(ctx context.Context, ref, group string) (*api.Machine, error) {
	reason := "group " + orNone(group)
	mc, err := m.resolve(ctx, ref)
	if err == nil && group != "" {
		_, err = m.store.Group(ctx, group)
	}
	if err != nil {
		err = toAPI(err)
		m.record(ctx, "set-group", idOf(mc), reason, err)
		return nil, err
	}
	err = m.change(ctx, "set-group", mc.ID, reason, func() (err error) {
		mc, err = m.store.UpdateMachine(ctx, mc.ID, func(x *store.Machine) error {
			x.Group = group
			return nil
		})
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	return ViewMachine(mc), nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
