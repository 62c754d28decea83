package machines

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

var _ api.ImageService = (*Manager)(nil)

// Images lists every version of the named images, with what uses each.
func (m *Manager) Images(ctx context.Context) ([]api.Image, error) {
	ims, err := m.images.List()
	if err != nil {
		return nil, err
	}
	plans, err := m.plans(ctx)
	if err != nil {
		return nil, err
	}
	bases, err := m.roots.Bases()
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, len(ims))
	for i, im := range ims {
		out[i] = imageView(im)
		out[i].Latest = i == len(ims)-1 || ims[i+1].Name != im.Name
		for _, p := range plans {
			if p.uses(im, out[i].Latest) {
				out[i].UsedBy = append(out[i].UsedBy, p.who)
			}
		}
		if bases[im.Digest] || m.volumes.InUse(im.Digest) {
			out[i].UsedBy = append(out[i].UsedBy, "roots")
		}
	}
	return out, nil
}

// imageView is the admin API's view of im.
func imageView(im image.Image) api.Image {
	return api.Image{Name: im.Name, Version: im.Version, Digest: im.Digest, Size: im.Size, TreeDigest: im.TreeDigest, Imported: im.Imported}
}

// namedPlan is a machine's or group's root plan that names an image.
type namedPlan struct {
	who  string // "machine ID NAME" or "group NAME"
	name string // the image name
	pin  int    // the version, 0 for the latest
}

// uses reports whether p mounts im, the latest of its name or not.
func (p namedPlan) uses(im image.Image, latest bool) bool {
	return p.name == im.Name && (p.pin == im.Version || (p.pin == 0 && latest))
}

// plans lists the machines' and groups' plans that name an image.
func (m *Manager) plans(ctx context.Context) ([]namedPlan, error) {
	var out []namedPlan
	add := func(who string, root wire.RootPlan) {
		if !hasImage(root) {
			return
		}
		if name, pin, err := image.ParseRef(root.Params[wire.ImageParam]); err == nil {
			out = append(out, namedPlan{who: who, name: name, pin: pin})
		}
	}
	ms, err := m.store.Machines(ctx)
	if err != nil {
		return nil, err
	}
	for _, mc := range ms {
		add(fmt.Sprintf("machine %.12s %s", mc.ID, mc.Name), mc.Root)
	}
	gs, err := m.store.Groups(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		add("group "+g.Name, g.Root)
	}
	return out, nil
}

// ImportImage imports source as name, logging progress.
func (m *Manager) ImportImage(ctx context.Context, name, source string) (*api.Image, error) {
	if !filepath.IsAbs(source) && !image.IsOCI(source) {
		return nil, fmt.Errorf("image source %q: %w: want an absolute path on the server, docker://REF or oci:PATH", source, api.ErrInvalid)
	}
	var last time.Time
	progress := func(done, total int64) {
		if time.Since(last) > 2*time.Second {
			last = time.Now()
			m.logger.Info("importing image", "name", name, "done", done, "total", total)
		}
	}
	var im *image.Image
	err := m.change(ctx, "image-import", "", fmt.Sprintf("image %s from %s", name, source), func() (err error) {
		im, err = m.images.Import(ctx, name, source, progress)
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	m.logger.Info("image imported", "name", name, "digest", im.Digest)
	view := imageView(*im)
	return &view, nil
}

// RemoveImage forgets ref, one version or every version of a name,
// unless a root plan, a machine's root or a snapshot still uses it.
func (m *Manager) RemoveImage(ctx context.Context, ref string) ([]api.Image, error) {
	if err := m.checkUnused(ctx, ref); err != nil {
		err = toAPI(err)
		m.record(ctx, "image-remove", "", "image "+ref, err)
		return nil, err
	}
	var removed []image.Image
	err := m.change(ctx, "image-remove", "", "image "+ref, func() (err error) {
		removed, err = m.images.Remove(ref)
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, len(removed))
	for i, im := range removed {
		out[i] = imageView(im)
	}
	return out, nil
}

// checkUnused refuses ref when a version it names is used: by a plan
// (pinned, or naming the latest) or as the base of a root or snapshot.
func (m *Manager) checkUnused(ctx context.Context, ref string) error {
	name, version, err := image.ParseRef(ref)
	if err != nil {
		return err
	}
	all, err := m.images.List()
	if err != nil {
		return err
	}
	plans, err := m.plans(ctx)
	if err != nil {
		return err
	}
	users, err := m.baseUsers(ctx)
	if err != nil {
		return err
	}
	for i, im := range all {
		if im.Name != name || (version != 0 && im.Version != version) {
			continue
		}
		latest := i == len(all)-1 || all[i+1].Name != name
		for _, p := range plans {
			if p.name == name && (version == 0 || p.uses(im, latest)) {
				return fmt.Errorf("image %s is the root of %s: %w", im.Ref(), p.who, api.ErrConflict)
			}
		}
		var roots []string
		for _, u := range users[im.Digest] {
			if !strings.HasPrefix(u, "image ") {
				roots = append(roots, u)
			}
		}
		if len(roots) > 0 || m.volumes.InUse(im.Digest) {
			return fmt.Errorf("image %s is the base of machines' roots or snapshots (%s; see `sealroot machine snapshots`): %w",
				im.Ref(), strings.Join(roots, "; "), api.ErrConflict)
		}
	}
	return nil
}

// hasImage reports whether root is of a kind that names a base image.
func hasImage(root wire.RootPlan) bool {
	switch root.Kind {
	case wire.RootISCSI, wire.RootNFS, wire.RootVolatile:
		return true
	}
	return false
}

// GCImages deletes the bases nothing references: no image version names
// them, and no machine's root or snapshot is made on them. It returns
// what it removed and what it kept, each kept base with what uses it.
// Volumes are checked even when no iSCSI provider serves them.
func (m *Manager) GCImages(ctx context.Context) (*api.GCResult, error) {
	users, err := m.baseUsers(ctx)
	if err != nil {
		m.record(ctx, "image-gc", "", "", err)
		return nil, err
	}
	res := &api.GCResult{Removed: []string{}, Kept: []api.GCKept{}}
	err = m.change(ctx, "image-gc", "", "", func() (err error) {
		res.Removed, err = m.images.GC(func(digest string) bool { return len(users[digest]) > 0 || m.volumes.InUse(digest) })
		return err
	})
	for _, d := range slices.Sorted(maps.Keys(users)) {
		res.Kept = append(res.Kept, api.GCKept{Digest: d, UsedBy: users[d]})
	}
	m.logger.Info("image gc", "removed", len(res.Removed), "kept", len(res.Kept))
	return res, err
}

// baseUsers maps base digests to what uses each: the image versions
// naming it ("image NAME@vN"), the plans mounting those ("machine ID
// NAME", "group G"), machines' roots and snapshots made on it ("root of
// machine ID NAME", "snapshot S of machine ID NAME"), and roots of
// machines no longer known.
func (m *Manager) baseUsers(ctx context.Context) (map[string][]string, error) {
	ims, err := m.images.List()
	if err != nil {
		return nil, err
	}
	plans, err := m.plans(ctx)
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for i, im := range ims {
		users[im.Digest] = append(users[im.Digest], "image "+im.Ref())
		latest := i == len(ims)-1 || ims[i+1].Name != im.Name
		for _, p := range plans {
			if p.uses(im, latest) {
				users[im.Digest] = append(users[im.Digest], p.who)
			}
		}
	}
	attributed, err := m.rootUsers(ctx, users)
	if err != nil {
		return nil, err
	}
	bases, err := m.roots.Bases()
	if err != nil {
		return nil, err
	}
	if vb, err := m.volumes.Bases(); err == nil {
		maps.Copy(bases, vb)
	}
	for d := range bases {
		if !attributed[d] {
			users[d] = append(users[d], "roots on the server of a machine no longer known (forgotten with --keep-root)")
		}
	}
	return users, nil
}

// rootUsers adds the known machines' roots and snapshots to users and
// returns the digests they account for.
func (m *Manager) rootUsers(ctx context.Context, users map[string][]string) (map[string]bool, error) {
	ms, err := m.store.Machines(ctx)
	if err != nil {
		return nil, err
	}
	attributed := map[string]bool{}
	for _, mc := range ms {
		plan, err := store.EffectiveRoot(ctx, m.store, mc)
		if err != nil {
			return nil, err
		}
		who := fmt.Sprintf("machine %.12s %s", mc.ID, mc.Name)
		if base, _ := m.roots.RootBase(mc.ID, plan); base != "" {
			users[base] = append(users[base], "root of "+who)
			attributed[base] = true
		}
		ss, _ := m.roots.Snapshots(mc.ID, plan)
		for _, sn := range ss {
			users[sn.Base] = append(users[sn.Base], fmt.Sprintf("snapshot %s of %s", sn.Name, who))
			attributed[sn.Base] = true
		}
	}
	return attributed, nil
}
