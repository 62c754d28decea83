package machines

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// DefaultMenuTimeout is how long a menu waits for a choice when the
// operator sets none; MaxMenuTimeout is the longest it may wait (the
// agent bounds one attestation attempt to two minutes).
const (
	DefaultMenuTimeout = 10 * time.Second
	MaxMenuTimeout     = time.Minute
)

// SetMenu implements api.MenuService: it checks mn (images exist, the
// owner's root is volatile when there are images, the default is an
// entry) and stores it as the machine's or group's menu. The change is
// recorded before it is applied; the store gives the machines concerned
// a new Version, so an exchange that offered the old menu is refused.
func (m *Manager) SetMenu(ctx context.Context, owner api.FileOwner, mn api.Menu) (*api.Menu, error) {
	sm, err := m.menuToSet(mn)
	var mc *store.Machine
	if err == nil {
		mc, err = m.menuOwnerRoot(ctx, owner, sm)
	}
	reason := menuReason(owner, &mn)
	if err != nil {
		err = toAPI(err)
		m.record(ctx, "menu-set", idOf(mc), reason, err)
		return nil, err
	}
	err = m.change(ctx, "menu-set", idOf(mc), reason, func() error { return m.putMenu(ctx, owner, mc, sm) })
	if err != nil {
		return nil, err
	}
	return viewMenu(sm), nil
}

// menuToSet checks what it can without the owner.
func (m *Manager) menuToSet(mn api.Menu) (*store.Menu, error) {
	sm := &store.Menu{Images: mn.Images, LocalDisk: mn.LocalDisk, Default: mn.Default, Timeout: time.Duration(mn.TimeoutMillis) * time.Millisecond}
	if mn.TimeoutMillis == 0 {
		sm.Timeout = DefaultMenuTimeout
	}
	if sm.Timeout < 0 || sm.Timeout > MaxMenuTimeout {
		return nil, fmt.Errorf("%w: menu timeout %v: want 1ms to %v", api.ErrInvalid, sm.Timeout, MaxMenuTimeout)
	}
	if len(sm.Images) == 0 && !sm.LocalDisk {
		return nil, fmt.Errorf("%w: a menu needs an image or the local disk", api.ErrInvalid)
	}
	if n := len(sm.Images) + 1; n > wire.MaxMenuEntries {
		return nil, fmt.Errorf("%w: %d menu entries, at most %d", api.ErrInvalid, n, wire.MaxMenuEntries)
	}
	if len(sm.Images) > 0 && m.images == nil {
		return nil, fmt.Errorf("%w: this server keeps no images", api.ErrConflict)
	}
	var ids []string
	for i, name := range sm.Images {
		if slices.Contains(sm.Images[:i], name) {
			return nil, fmt.Errorf("%w: image %q twice in the menu", api.ErrInvalid, name)
		}
		if _, err := m.images.Get(name); err != nil {
			return nil, fmt.Errorf("menu image %q: %w", name, err)
		}
		ids = append(ids, wire.ImageEntryID(name))
	}
	if sm.LocalDisk {
		ids = append(ids, wire.EntryLocalDiskID)
	}
	if sm.Default == "" {
		sm.Default = ids[0]
	}
	if !slices.Contains(ids, sm.Default) {
		return nil, fmt.Errorf("%w: default %q is not a menu entry (want one of %v)", api.ErrInvalid, sm.Default, ids)
	}
	return sm, nil
}

// menuOwnerRoot resolves owner and checks that its root can boot the
// menu's images: each image entry boots a volatile root over that image
// (a persistent root is tied to the base it was made on, so switching its
// image would put one image's changes over another's base). It returns
// the machine, nil for a group.
func (m *Manager) menuOwnerRoot(ctx context.Context, owner api.FileOwner, sm *store.Menu) (*store.Machine, error) {
	so, err := m.fileOwner(ctx, owner)
	if err != nil {
		return nil, err
	}
	var mc *store.Machine
	var root wire.RootPlan
	if so.Group != "" {
		g, err := m.store.Group(ctx, so.Group)
		if err != nil {
			return nil, err
		}
		root = g.Root
	} else {
		if mc, err = m.store.Machine(ctx, so.Machine); err != nil {
			return nil, err
		}
		if root, err = store.EffectiveRoot(ctx, m.store, mc); err != nil {
			return mc, err
		}
	}
	if len(sm.Images) > 0 && root.Kind != wire.RootVolatile {
		return mc, fmt.Errorf("%w: %s mounts a %s root: menu images boot a volatile root over the chosen image; set a volatile root first (a persistent root stays on the image it was made from)",
			api.ErrConflict, owner, root.Kind)
	}
	return mc, nil
}

func (m *Manager) putMenu(ctx context.Context, owner api.FileOwner, mc *store.Machine, sm *store.Menu) error {
	if mc == nil {
		return toAPI(m.updateGroupMenu(ctx, owner.Group, sm))
	}
	_, err := m.store.UpdateMachine(ctx, mc.ID, func(x *store.Machine) error {
		x.Menu = sm
		return nil
	})
	return toAPI(err)
}

// updateGroupMenu replaces group name's menu, keeping its root, in one
// store transaction that checks again that the root can boot the menu's
// images (the root may have changed since menuOwnerRoot looked).
func (m *Manager) updateGroupMenu(ctx context.Context, name string, sm *store.Menu) error {
	_, err := m.store.UpdateGroup(ctx, name, func(g *store.Group, found bool) error {
		switch {
		case !found:
			return fmt.Errorf("group %s: %w", name, store.ErrNotFound)
		case sm != nil && len(sm.Images) > 0 && g.Root.Kind != wire.RootVolatile:
			return fmt.Errorf("%w: group %s mounts a %s root: menu images boot a volatile root over the chosen image; set a volatile root first",
				api.ErrConflict, name, g.Root.Kind)
		}
		g.Menu = sm
		return nil
	})
	return err
}

// Menu implements api.MenuService.
func (m *Manager) Menu(ctx context.Context, owner api.FileOwner) (*api.Menu, error) {
	so, err := m.fileOwner(ctx, owner)
	if err != nil {
		return nil, err
	}
	var sm *store.Menu
	if so.Group != "" {
		g, err := m.store.Group(ctx, so.Group)
		if err != nil {
			return nil, toAPI(err)
		}
		sm = g.Menu
	} else {
		mc, err := m.store.Machine(ctx, so.Machine)
		if err != nil {
			return nil, toAPI(err)
		}
		sm = mc.Menu
	}
	if sm == nil {
		return nil, fmt.Errorf("%s has no menu: %w", owner, api.ErrNotFound)
	}
	return viewMenu(sm), nil
}

// DeleteMenu implements api.MenuService; the change is recorded before it
// is applied.
func (m *Manager) DeleteMenu(ctx context.Context, owner api.FileOwner) error {
	so, err := m.fileOwner(ctx, owner)
	if err != nil {
		m.record(ctx, "menu-delete", "", menuReason(owner, nil), err)
		return err
	}
	return m.change(ctx, "menu-delete", so.Machine, menuReason(owner, nil), func() error {
		if so.Group != "" {
			return toAPI(m.updateGroupMenu(ctx, so.Group, nil))
		}
		_, err := m.store.UpdateMachine(ctx, so.Machine, func(x *store.Machine) error {
			x.Menu = nil
			return nil
		})
		return toAPI(err)
	})
}

func menuReason(owner api.FileOwner, mn *api.Menu) string {
	what := "menu"
	if owner.Group != "" {
		what = fmt.Sprintf("group %q menu", owner.Group)
	}
	if mn == nil {
		return what
	}
	return fmt.Sprintf("%s images %v local-disk %v default %q timeout %dms", what, mn.Images, mn.LocalDisk, mn.Default, mn.TimeoutMillis)
}

func viewMenu(sm *store.Menu) *api.Menu {
	return &api.Menu{Images: slices.Clone(sm.Images), LocalDisk: sm.LocalDisk, Default: sm.Default, TimeoutMillis: sm.Timeout.Milliseconds()}
}

func viewMenuOrNil(sm *store.Menu) *api.Menu {
	if sm == nil {
		return nil
	}
	return viewMenu(sm)
}
