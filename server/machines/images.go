package machines

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/wire"
)

var _ api.ImageService = (*Manager)(nil)

// Images lists the named images.
func (m *Manager) Images(context.Context) ([]api.Image, error) {
	ims, err := m.images.List()
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
func (m *Manager) ImportImage(ctx context.Context, name, source string) (*api.Image, error) {
	if !filepath.IsAbs(source) {
		return nil, fmt.Errorf("image source %q: %w: want an absolute path on the server", source, api.ErrInvalid)
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

// RemoveImage forgets name, unless a machine's root still names it.
func (m *Manager) RemoveImage(ctx context.Context, name string) error {
	if err := m.checkUnused(ctx, name); err != nil {
		m.record(ctx, "image-remove", "", "image "+name, err)
		return err
	}
	return m.change(ctx, "image-remove", "", "image "+name, func() error { return toAPI(m.images.Remove(name)) })
}

func (m *Manager) checkUnused(ctx context.Context, name string) error {
	ms, err := m.store.Machines(ctx)
	if err != nil {
		return err
	}
	for _, mc := range ms {
		if hasImage(mc.Root) && mc.Root.Params[wire.ImageParam] == name {
			return fmt.Errorf("image %s is the root of machine %s %s: %w", name, mc.ID[:12], mc.Name, api.ErrConflict)
		}
	}
	gs, err := m.store.Groups(ctx)
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

// GCImages deletes the bases no image name, volume or root references.
// Volumes are checked even when no iSCSI provider serves them.
func (m *Manager) GCImages(ctx context.Context) ([]string, error) {
	bases, err := m.roots.Bases()
	if err != nil {
		m.record(ctx, "image-gc", "", "", err)
		return nil, err
	}
	var removed []string
	err = m.change(ctx, "image-gc", "", "", func() (err error) {
		removed, err = m.images.GC(func(digest string) bool { return bases[digest] || m.volumes.InUse(digest) })
		return err
	})
	m.logger.Info("image gc", "removed", len(removed))
	return removed, err
}
