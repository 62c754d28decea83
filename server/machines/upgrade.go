package machines

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// ForgetMachine forgets the machine, then deletes its roots and their
// snapshots unless keepRoot. The audit entry says which, before either
// happens.
func (m *Manager) ForgetMachine(ctx context.Context, ref string, keepRoot bool) (*api.Forgotten, error) {
	reason := "roots and snapshots deleted"
	if keepRoot {
		reason = "roots kept"
	}
	f := &api.Forgotten{}
	var after func(string) error
	if !keepRoot && m.roots != nil {
		after = func(id string) error {
			err := m.roots.Delete(ctx, id)
			if errors.Is(err, roots.ErrNoRoot) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("machine %.12s forgotten, but deleting its roots failed (`sealroot machine delete-root` cannot name it now; remove them on the server): %w", id, err)
			}
			f.RootDeleted = true
			return nil
		}
	}
	id, err := m.forget(ctx, ref, reason, after)
	f.Machine = id
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Snapshots lists the machine's snapshots, with the image version of
// each one's base.
func (m *Manager) Snapshots(ctx context.Context, ref string) ([]api.Snapshot, error) {
	mc, err := m.effective(ctx, ref)
	if err != nil {
		return nil, err
	}
	ss, err := m.roots.Snapshots(mc.ID, mc.Root)
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

// DeleteSnapshot removes the machine's snapshot name.
func (m *Manager) DeleteSnapshot(ctx context.Context, ref, name string) error {
	mc, err := m.effective(ctx, ref)
	if err != nil {
		m.record(ctx, "snapshot-delete", idOf(mc), "snapshot "+name, err)
		return err
	}
	return m.change(ctx, "snapshot-delete", mc.ID, "snapshot "+name, func() error {
		return toAPI(m.roots.DeleteSnapshot(ctx, mc.ID, mc.Root, name))
	})
}

// effective resolves ref to its machine with its effective root plan.
func (m *Manager) effective(ctx context.Context, ref string) (*store.Machine, error) {
	mc, err := m.resolve(ctx, ref)
	if err == nil {
		mc.Root, err = store.EffectiveRoot(ctx, m.store, mc)
	}
	return mc, toAPI(err)
}

// versionsByDigest maps base digests to the image versions naming them.
func (m *Manager) versionsByDigest() map[string]string {
	ims, _ := m.images.List()
	out := make(map[string]string, len(ims))
	for _, im := range ims {
		out[im.Digest] = im.Ref()
	}
	return out
}

// UpgradeRoot moves the machine's root to ref (its plan's image when
// ref is ""). A machine outside a group gets ref as its plan's image.
func (m *Manager) UpgradeRoot(ctx context.Context, machineRef, ref string) (*api.Upgrade, error) {
	mc, err := m.effective(ctx, machineRef)
	var im *image.Image
	if err == nil {
		im, err = m.upgradeTarget(mc, ref)
	}
	if err != nil {
		err = toAPI(err)
		m.record(ctx, "root-upgrade", idOf(mc), "to "+ref, err)
		return nil, err
	}
	if ref != "" && mc.Group == "" && mc.Root.Params[wire.ImageParam] != ref {
		if _, err := m.SetRoot(ctx, mc.ID, withImage(mc.Root, ref)); err != nil {
			return nil, err
		}
	}
	return m.upgrade(ctx, mc, *im, false)
}

// upgradeTarget is the image version a machine's root moves to: ref, or
// what its plan names; of the plan's image name.
func (m *Manager) upgradeTarget(mc *store.Machine, ref string) (*image.Image, error) {
	if !hasImage(mc.Root) {
		return nil, fmt.Errorf("machine %.12s has a %q root, which has no image: %w", mc.ID, mc.Root.Kind, api.ErrInvalid)
	}
	plan := mc.Root.Params[wire.ImageParam]
	if ref == "" {
		ref = plan
	}
	if mc.Group != "" && ref != plan {
		if err := sameName(ref, plan); err != nil {
			return nil, err
		}
	}
	return m.images.Get(ref)
}

func sameName(ref, plan string) error {
	a, _, err := image.ParseRef(ref)
	if err != nil {
		return err
	}
	b, _, _ := image.ParseRef(plan)
	if a != b {
		return fmt.Errorf("%s is not a version of %s, the image of the machine's group: %w", ref, plan, api.ErrInvalid)
	}
	return nil
}

// upgrade moves mc's root onto im's base, keeping the old root as a
// snapshot named for the version it came from. A volatile root, or a
// machine without a root yet, has nothing to move. A dry run returns
// what it would do and changes nothing.
func (m *Manager) upgrade(ctx context.Context, mc *store.Machine, im image.Image, dryRun bool) (*api.Upgrade, error) {
	u := &api.Upgrade{Machine: mc.ID, To: im.Ref()}
	if mc.Root.Kind == wire.RootVolatile {
		u.Skipped = "volatile root: takes its plan's image at the next boot"
		return u, nil
	}
	base, err := m.roots.RootBase(mc.ID, mc.Root)
	if err != nil && !isNoRoot(err) {
		return nil, toAPI(err)
	}
	switch {
	case base == "":
		u.Skipped = "no root yet: made from its plan's image at its first boot"
		return u, nil
	case base == im.Digest:
		u.From, u.Skipped = im.Ref(), "already on "+im.Ref()
		return u, nil
	}
	u.From = m.versionsByDigest()[base]
	if u.From == "" {
		u.From = "sha256:" + base[:12]
	}
	u.KeptAs = m.keepName(mc, u.From)
	if dryRun {
		return u, nil
	}
	reason := fmt.Sprintf("root from %s to %s, old root kept as snapshot %s", u.From, u.To, u.KeptAs)
	err = m.change(ctx, "root-upgrade", mc.ID, reason, func() error {
		if err := m.roots.Release(ctx, mc.ID); err != nil {
			return toAPI(err)
		}
		return toAPI(m.roots.Upgrade(ctx, mc.ID, mc.Root, im.Digest, u.KeptAs))
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// keepName is a snapshot name for the root of version from that is not
// taken yet: before-NAME-vN, then before-NAME-vN.2, ...
func (m *Manager) keepName(mc *store.Machine, from string) string {
	base := "before-" + strings.NewReplacer("@", "-", ":", "-").Replace(from)
	ss, _ := m.roots.Snapshots(mc.ID, mc.Root)
	name := base
	for i := 2; slices.ContainsFunc(ss, func(s roots.Snapshot) bool { return s.Name == name }); i++ {
		name = fmt.Sprintf("%s.%d", base, i)
	}
	return name
}

func isNoRoot(err error) bool { return errors.Is(err, roots.ErrNoRoot) }

func withImage(root wire.RootPlan, ref string) wire.RootPlan {
	root.Params = maps.Clone(root.Params)
	if root.Params == nil {
		root.Params = map[string]string{}
	}
	root.Params[wire.ImageParam] = ref
	return root
}

// Rollout moves group's machines to req.Image (the latest version of the
// group's image name when ""), as UpgradeRoot does, in machine ID order.
// req.Canary > 0 moves at most that many machines still on another
// version, req.Machines only those members; either leaves the group's
// plan as it is. Otherwise every member moves and then the group's plan
// names the version. A volatile group has no roots to move: the plan
// changes and every member takes it at its next boot, so a canary or a
// subset is refused. req.DryRun says what would happen and changes
// nothing.
func (m *Manager) Rollout(ctx context.Context, group string, req api.RolloutRequest) (*api.Rollout, error) {
	reason := fmt.Sprintf("group %s to %s canary %d machines %v", group, req.Image, req.Canary, req.Machines)
	g, im, only, err := m.rolloutTarget(ctx, group, req)
	if err != nil {
		err = toAPI(err)
		if !req.DryRun {
			m.record(ctx, "group-rollout", "", reason, err)
		}
		return nil, err
	}
	ms, err := m.store.Machines(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ms, func(a, b *store.Machine) int { return strings.Compare(a.ID, b.ID) })
	partial := req.Canary > 0 || only != nil
	ro := &api.Rollout{Group: group, Image: im.Ref(), Machines: []api.Upgrade{}, GroupRoot: g.Root, DryRun: req.DryRun}
	moved := 0
	for _, mc := range ms {
		if mc.Group != group {
			continue
		}
		mc.Root = g.Root
		if (req.Canary > 0 && moved >= req.Canary) || (only != nil && !only[mc.ID]) {
			if base, _ := m.roots.RootBase(mc.ID, mc.Root); base != "" && base != im.Digest {
				ro.Remaining++
			}
			continue
		}
		u, err := m.upgrade(ctx, mc, *im, req.DryRun)
		if err != nil {
			return ro, fmt.Errorf("rollout of %s to %s stopped at machine %.12s: %w", group, im.Ref(), mc.ID, err)
		}
		if u.Skipped == "" {
			moved++
		}
		ro.Machines = append(ro.Machines, *u)
	}
	if partial {
		return ro, nil
	}
	ro.GroupRoot = withImage(g.Root, im.Ref())
	if req.DryRun {
		return ro, nil
	}
	gv, err := m.setGroupRoot(ctx, group, ro.GroupRoot, &g.Root)
	if err != nil {
		return ro, err
	}
	ro.GroupRoot = gv.Root
	return ro, nil
}

// rolloutTarget checks a rollout request against the group: its plan
// names an image, the version is of that image, the machines named are
// its members. It returns the group, the version and the members named
// (nil: all).
func (m *Manager) rolloutTarget(ctx context.Context, group string, req api.RolloutRequest) (*store.Group, *image.Image, map[string]bool, error) {
	g, err := m.store.Group(ctx, group)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case req.Canary < 0:
		return nil, nil, nil, fmt.Errorf("canary %d: %w: want 0 (all) or more", req.Canary, api.ErrInvalid)
	case req.Canary > 0 && len(req.Machines) > 0:
		return nil, nil, nil, fmt.Errorf("%w: a canary count or a list of machines, not both", api.ErrInvalid)
	case !hasImage(g.Root):
		return nil, nil, nil, fmt.Errorf("group %s has a %q root, which has no image: %w", group, g.Root.Kind, api.ErrInvalid)
	case g.Root.Kind == wire.RootVolatile && (req.Canary > 0 || len(req.Machines) > 0):
		return nil, nil, nil, fmt.Errorf("group %s has a volatile root: its members take the group's image at their next boot, all of them; "+
			"to try a version on some first, give them their own plan (`sealroot machine set-root`): %w", group, api.ErrInvalid)
	}
	plan := g.Root.Params[wire.ImageParam]
	ref := req.Image
	if ref == "" {
		name, _, err := image.ParseRef(plan)
		if err != nil {
			return nil, nil, nil, err
		}
		ref = name
	}
	if err := sameName(ref, plan); err != nil {
		return nil, nil, nil, err
	}
	im, err := m.images.Get(ref)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(req.Machines) == 0 {
		return g, im, nil, nil
	}
	only := map[string]bool{}
	for _, r := range req.Machines {
		mc, err := m.resolve(ctx, r)
		if err != nil {
			return nil, nil, nil, err
		}
		if mc.Group != group {
			return nil, nil, nil, fmt.Errorf("machine %.12s is not in group %s: %w", mc.ID, group, api.ErrInvalid)
		}
		only[mc.ID] = true
	}
	return g, im, only, nil
}
