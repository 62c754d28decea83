package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/rootnfs"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/wire"
)

var _ api.ImageService = (*storage)(nil)

// apiError gives a storage error the api sentinel its kind maps to, so the
// API answers with the right status and errors.Is still finds both.
type apiError struct{ kind, err error }

func (e *apiError) Error() string   { return e.err.Error() }
func (e *apiError) Unwrap() []error { return []error{e.kind, e.err} }

func isRefusal(err error) bool {
	for _, s := range []error{api.ErrInvalid, api.ErrNotFound, api.ErrAmbiguous, api.ErrConflict} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// toAPI maps image and volume errors to api sentinels.
func toAPI(err error) error {
	var kind error
	switch {
	case err == nil || isRefusal(err):
		return err
	case errors.Is(err, image.ErrNotFound), errors.Is(err, volume.ErrNotFound), errors.Is(err, fs.ErrNotExist),
		errors.Is(err, rootnfs.ErrNotFound), errors.Is(err, store.ErrNotFound):
		kind = api.ErrNotFound
	case errors.Is(err, image.ErrBadName), errors.Is(err, volume.ErrBadName), errors.Is(err, image.ErrUnsafePath),
		errors.Is(err, rootnfs.ErrBadName), errors.Is(err, store.ErrBadGroupName):
		kind = api.ErrInvalid
	case errors.Is(err, volume.ErrExists), errors.Is(err, volume.ErrBusy), errors.Is(err, rootnfs.ErrExists):
		kind = api.ErrConflict
	default:
		return err
	}
	return &apiError{kind: kind, err: err}
}

// Images lists the named images.
func (st *storage) Images(context.Context) ([]api.Image, error) {
	ims, err := st.images.List()
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, len(ims))
	for i, im := range ims {
		out[i] = imageView(im)
	}
	return out, nil
}

// imageView is the admin API's view of im.
func imageView(im image.Image) api.Image {
	return api.Image{Name: im.Name, Digest: im.Digest, Size: im.Size, TreeDigest: im.TreeDigest, Imported: im.Imported}
}

// ImportImage imports source as name, logging progress.
func (st *storage) ImportImage(ctx context.Context, name, source string) (*api.Image, error) {
	if !filepath.IsAbs(source) {
		return nil, fmt.Errorf("image source %q: %w: want an absolute path on the server", source, api.ErrInvalid)
	}
	var last time.Time
	progress := func(done, total int64) {
		if time.Since(last) > 2*time.Second {
			last = time.Now()
			st.logger.Info("importing image", "name", name, "done", done, "total", total)
		}
	}
	var im *image.Image
	err := st.change(ctx, "image-import", "", fmt.Sprintf("image %s from %s", name, source), func() (err error) {
		im, err = st.images.Import(ctx, name, source, progress)
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	st.logger.Info("image imported", "name", name, "digest", im.Digest)
	view := imageView(*im)
	return &view, nil
}

// RemoveImage forgets name, unless a machine's root still names it.
func (st *storage) RemoveImage(ctx context.Context, name string) error {
	if err := st.checkUnused(ctx, name); err != nil {
		st.record(ctx, "image-remove", "", "image "+name, err)
		return err
	}
	return st.change(ctx, "image-remove", "", "image "+name, func() error { return toAPI(st.images.Remove(name)) })
}

func (st *storage) checkUnused(ctx context.Context, name string) error {
	ms, err := st.store.Machines(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if hasImage(m.Root) && m.Root.Params[wire.ImageParam] == name {
			return fmt.Errorf("image %s is the root of machine %s %s: %w", name, m.ID[:12], m.Name, api.ErrConflict)
		}
	}
	gs, err := st.store.Groups(ctx)
	if err != nil {
		return err
	}
	for _, g := range gs {
		if hasImage(g.Root) && g.Root.Params[wire.ImageParam] == name {
			return fmt.Errorf("image %s is the root of group %s: %w", name, g.Name, api.ErrConflict)
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

// GCImages deletes the bases no image name, volume or NFS root references.
func (st *storage) GCImages(ctx context.Context) ([]string, error) {
	var nfsBases map[string]bool
	if st.nfsRoots != nil {
		var err error
		if nfsBases, err = st.nfsRoots.Bases(); err != nil {
			st.record(ctx, "image-gc", "", "", err)
			return nil, err
		}
	}
	var removed []string
	err := st.change(ctx, "image-gc", "", "", func() (err error) {
		removed, err = st.images.GC(func(digest string) bool { return st.volumes.InUse(digest) || nfsBases[digest] })
		return err
	})
	st.logger.Info("image gc", "removed", len(removed))
	return removed, err
}

// ResetVolume puts the machine's volume back to its base. When the
// machine's root now names another image, the volume is deleted instead
// and made from that image at the next boot.
func (st *storage) ResetVolume(ctx context.Context, ref string) error {
	return st.volumeOp(ctx, "volume-reset", ref, "", st.reset)
}

func (st *storage) reset(ctx context.Context, m *store.Machine) error {
	if st.nfsRoot(m) {
		return st.nfsRoots.Reset(ctx, m.ID)
	}
	meta, err := st.volumes.Meta(m.ID)
	if err != nil {
		return err
	}
	if name := m.Root.Params[wire.ImageParam]; m.Root.Kind == wire.RootISCSI && name != "" {
		// m.Root is the effective root (volumeOp).
		if im, err := st.images.Get(name); err == nil && im.Digest != meta.Base {
			return st.volumes.Delete(m.ID)
		}
	}
	return st.volumes.Reset(ctx, m.ID)
}

// SnapshotVolume saves the machine's volume as name.
func (st *storage) SnapshotVolume(ctx context.Context, ref, name string) error {
	return st.volumeOp(ctx, "volume-snapshot", ref, "snapshot "+name, func(ctx context.Context, m *store.Machine) error {
		if st.nfsRoot(m) {
			return st.nfsRoots.Snapshot(ctx, m.ID, name)
		}
		return st.volumes.Snapshot(m.ID, name)
	})
}

// RollbackVolume replaces the machine's volume with snapshot name.
func (st *storage) RollbackVolume(ctx context.Context, ref, name string) error {
	return st.volumeOp(ctx, "volume-rollback", ref, "snapshot "+name, func(ctx context.Context, m *store.Machine) error {
		if st.nfsRoot(m) {
			return st.nfsRoots.Rollback(ctx, m.ID, name)
		}
		return st.volumes.Rollback(m.ID, name)
	})
}

// DeleteRoot removes the machine's volume and NFS root from the server,
// with their snapshots. The machine gets a new root from its image at its
// next boot.
func (st *storage) DeleteRoot(ctx context.Context, ref string) error {
	return st.volumeOp(ctx, "root-delete", ref, "", func(ctx context.Context, m *store.Machine) error {
		var err error
		deleted := 0
		if st.nfsRoots != nil && st.nfsRoots.Has(m.ID) {
			err = st.nfsRoots.Delete(ctx, m.ID)
			deleted++
		}
		if _, merr := st.volumes.Meta(m.ID); err == nil && merr == nil {
			err = st.volumes.Delete(m.ID)
			deleted++
		}
		if err == nil && deleted == 0 {
			err = fmt.Errorf("machine %.12s has no root on the server: %w", m.ID, api.ErrNotFound)
		}
		return err
	})
}

// nfsRoot reports whether m's root operations go to its NFS root: the
// NFS provider serves its root, or it has an NFS root and a kind no
// provider serves (none).
func (st *storage) nfsRoot(m *store.Machine) bool {
	if st.nfsRoots == nil {
		return false
	}
	if p := st.providerOf(m.Root); p != nil {
		return p == st.nfsRoots
	}
	return !rootiscsi.Serves(m.Root) && st.nfsRoots.Has(m.ID)
}

// volumeOp resolves ref, records action and then withdraws the machine's
// target, so its volume is closed, and runs op. The machine's Root is its
// effective root (its group's when it is in one). A boot in flight that
// prepares the root meanwhile is refused by the volume (volume.ErrBusy),
// or finds its target withdrawn and attests again.
func (st *storage) volumeOp(ctx context.Context, action, ref, reason string, op func(context.Context, *store.Machine) error) error {
	m, err := st.machines.Resolve(ctx, ref)
	if err == nil {
		m.Root, err = store.EffectiveRoot(ctx, st.store, m)
	}
	if err != nil {
		err = toAPI(err)
		st.record(ctx, action, idOf(m), reason, err)
		return err
	}
	return st.change(ctx, action, m.ID, reason, func() error {
		if err := st.releaseRoot(ctx, m.ID); err != nil {
			return toAPI(err)
		}
		return toAPI(op(ctx, m))
	})
}

func idOf(m *store.Machine) string {
	if m == nil {
		return ""
	}
	return m.ID
}

// SetRoot sets the root plan of the machine's next boot. A root other
// than none must name an existing image. A machine in a group takes its
// group's root; SetRoot refuses it.
func (st *storage) SetRoot(ctx context.Context, ref string, root wire.RootPlan) (*api.Machine, error) {
	reason := fmt.Sprintf("root %s %v", root.Kind, root.Params)
	setRoot := func(mc *store.Machine) error {
		if mc.Group != "" {
			return fmt.Errorf("machine %.12s is in group %s, whose root it mounts: set the group's root, or take the machine out of the group first: %w",
				mc.ID, mc.Group, api.ErrConflict)
		}
		mc.Root = root
		return nil
	}
	m, err := st.machines.Resolve(ctx, ref)
	if err == nil {
		err = st.checkRoot(root)
	}
	if err == nil {
		dry := *m
		err = setRoot(&dry)
	}
	if err != nil {
		err = toAPI(err)
		st.record(ctx, "set-root", idOf(m), reason, err)
		return nil, err
	}
	err = st.change(ctx, "set-root", m.ID, reason, func() (err error) {
		m, err = st.store.UpdateMachine(ctx, m.ID, setRoot)
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	return machines.ViewMachine(m), nil
}

func (st *storage) checkRoot(root wire.RootPlan) error {
	switch root.Kind {
	case wire.RootNone:
		return nil
	case wire.RootISCSI, wire.RootNFS, wire.RootVolatile:
		if via := root.Params[wire.VolatileVia]; root.Kind == wire.RootVolatile && via != "" && via != wire.ViaNFS && via != wire.ViaISCSI {
			return fmt.Errorf("%w: a volatile root reads its base via nfs or iscsi, not %q", api.ErrInvalid, via)
		}
		name := root.Params[wire.ImageParam]
		if name == "" {
			return fmt.Errorf("%w: a %s root needs an image (root parameter \"image\")", api.ErrInvalid, root.Kind)
		}
		_, err := st.images.Get(name)
		return err
	}
	return fmt.Errorf("root kind %q: %w: want %s, %s, %s or %s", root.Kind, api.ErrInvalid,
		wire.RootNone, wire.RootISCSI, wire.RootNFS, wire.RootVolatile)
}

// Groups lists the groups.
func (st *storage) Groups(ctx context.Context) ([]*api.Group, error) {
	gs, err := st.store.Groups(ctx)
	if err != nil {
		return nil, err
	}
	return machines.ViewGroups(gs), nil
}

// SetGroupRoot creates group name, or replaces its root plan: the root
// its machines mount from their next boot.
func (st *storage) SetGroupRoot(ctx context.Context, name string, root wire.RootPlan) (*api.Group, error) {
	g := &store.Group{Name: name, Root: root}
	reason := fmt.Sprintf("group %s root %s %v", name, root.Kind, root.Params)
	if err := toAPI(st.checkRoot(root)); err != nil {
		st.record(ctx, "group-set-root", "", reason, err)
		return nil, err
	}
	err := st.change(ctx, "group-set-root", "", reason, func() error { return toAPI(st.store.PutGroup(ctx, g)) })
	if err != nil {
		return nil, err
	}
	return machines.ViewGroup(g), nil
}

// DeleteGroup removes an empty group.
func (st *storage) DeleteGroup(ctx context.Context, name string) error {
	return st.change(ctx, "group-delete", "", "group "+name, func() error {
		err := st.store.DeleteGroup(ctx, name)
		if errors.Is(err, store.ErrGroupInUse) {
			err = &apiError{kind: api.ErrConflict, err: err}
		}
		return toAPI(err)
	})
}

// SetGroup puts the machine in group (which must exist), or takes it out
// of its group when group is "". It mounts the group's root, or its own
// again, from its next boot.
func (st *storage) SetGroup(ctx context.Context, ref, group string) (*api.Machine, error) {
	reason := "group " + orNone(group)
	m, err := st.machines.Resolve(ctx, ref)
	if err == nil && group != "" {
		_, err = st.store.Group(ctx, group)
	}
	if err != nil {
		err = toAPI(err)
		st.record(ctx, "set-group", idOf(m), reason, err)
		return nil, err
	}
	err = st.change(ctx, "set-group", m.ID, reason, func() (err error) {
		m, err = st.store.UpdateMachine(ctx, m.ID, func(mc *store.Machine) error {
			mc.Group = group
			return nil
		})
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	return machines.ViewMachine(m), nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
