package machines

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// SetFile implements api.FileService: it checks f (path, mode, owner,
// size, and a template against sample data) and stores it for the owner.
// The change is recorded before it is applied (see the package comment).
func (m *Manager) SetFile(ctx context.Context, owner api.FileOwner, f api.File) error {
	so, sf, err := m.fileToSet(ctx, owner, f)
	if err != nil {
		m.recordFiles(ctx, "file-set", owner, so, f.Path, err)
		return err
	}
	return m.change(ctx, "file-set", so.Machine, filesReason(owner, f.Path), func() error {
		err := m.store.PutFile(ctx, so, sf)
		if errors.Is(err, store.ErrFilesLimit) || errors.Is(err, wire.ErrBadFile) {
			err = fmt.Errorf("%w: %v", api.ErrInvalid, err)
		}
		return fromStore(err)
	})
}

// fileToSet checks f and resolves its owner.
func (m *Manager) fileToSet(ctx context.Context, owner api.FileOwner, f api.File) (store.FileOwner, *store.File, error) {
	so, err := m.fileOwner(ctx, owner)
	if err != nil {
		return so, nil, err
	}
	if err := wire.CheckFile(&wire.File{Path: f.Path, Mode: f.Mode, UID: f.UID, GID: f.GID, Content: f.Content}); err != nil {
		return so, nil, fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	if f.Template {
		t, err := parseFileTemplate(f.Content)
		if err != nil {
			return so, nil, fmt.Errorf("%w: template %s: %v", api.ErrInvalid, f.Path, err)
		}
		d := sampleFileData()
		if _, err := renderFile(t, &d); err != nil {
			return so, nil, fmt.Errorf("%w: template %s on sample data: %v", api.ErrInvalid, f.Path, err)
		}
	}
	return so, &store.File{Path: f.Path, Mode: f.Mode, UID: f.UID, GID: f.GID, Template: f.Template, Content: f.Content}, nil
}

// Files implements api.FileService.
func (m *Manager) Files(ctx context.Context, owner api.FileOwner) ([]api.File, error) {
	so, err := m.fileOwner(ctx, owner)
	if err != nil {
		return nil, err
	}
	fs, err := m.store.Files(ctx, so)
	if err != nil {
		return nil, fromStore(err)
	}
	out := make([]api.File, 0, len(fs))
	for _, f := range fs {
		out = append(out, api.File{Path: f.Path, Mode: f.Mode, UID: f.UID, GID: f.GID, Template: f.Template, Size: len(f.Content)})
	}
	return out, nil
}

// DeleteFile implements api.FileService; the change is recorded before
// it is applied.
func (m *Manager) DeleteFile(ctx context.Context, owner api.FileOwner, path string) error {
	so, err := m.fileOwner(ctx, owner)
	if err != nil {
		m.recordFiles(ctx, "file-delete", owner, so, path, err)
		return err
	}
	return m.change(ctx, "file-delete", so.Machine, filesReason(owner, path), func() error {
		return fromStore(m.store.DeleteFile(ctx, so, path))
	})
}

// fileOwner resolves owner's machine reference.
func (m *Manager) fileOwner(ctx context.Context, owner api.FileOwner) (store.FileOwner, error) {
	switch {
	case owner.Group != "" && owner.Machine == "":
		if _, err := m.store.Group(ctx, owner.Group); err != nil {
			return store.FileOwner{}, fromStore(err)
		}
		return store.FileOwner{Group: owner.Group}, nil
	case owner.Machine != "" && owner.Group == "":
		mc, err := m.resolve(ctx, owner.Machine)
		if err != nil {
			return store.FileOwner{}, err
		}
		return store.FileOwner{Machine: mc.ID}, nil
	}
	return store.FileOwner{}, fmt.Errorf("%w: want a machine or a group", api.ErrInvalid)
}

func (m *Manager) recordFiles(ctx context.Context, action string, owner api.FileOwner, so store.FileOwner, path string, err error) {
	m.record(ctx, action, so.Machine, filesReason(owner, path), err)
}

func filesReason(owner api.FileOwner, path string) string {
	if owner.Group != "" {
		return fmt.Sprintf("group %q file %q", owner.Group, path)
	}
	return fmt.Sprintf("file %q", path)
}

// ReleaseFiles returns the files for machine mc's credential: its group's
// and its own, its own winning where paths are equal or one lies under
// the other, templates rendered for it. address is where it attests
// from; tunnel is its tunnel plan, nil without one. Loading files is
// recorded as "files-load" (count only, actor ServerActor) before they are
// returned; when it cannot be, none are (api.ErrUnavailable). It is not a
// release: the attestation's "allowed" record is.
func (m *Manager) ReleaseFiles(ctx context.Context, mc *store.Machine, address string, tunnel *wire.TunnelPlan) ([]wire.File, error) {
	ctx = WithActor(ctx, ServerActor) // only the server seals credentials
	out, err := m.releaseFiles(ctx, mc, address, tunnel)
	if err != nil {
		m.record(ctx, "files-load", mc.ID, "", err)
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	if err := m.recordFirst(ctx, "files-load", mc.ID, fmt.Sprintf("%d files loaded for sealing", len(out))); err != nil {
		return nil, err
	}
	return out, nil
}

func (m *Manager) releaseFiles(ctx context.Context, mc *store.Machine, address string, tunnel *wire.TunnelPlan) ([]wire.File, error) {
	own, err := m.store.Files(ctx, store.FileOwner{Machine: mc.ID})
	if err != nil {
		return nil, fmt.Errorf("files of machine %s: %w", short(mc.ID), err)
	}
	var group []*store.File
	if mc.Group != "" {
		if group, err = m.store.Files(ctx, store.FileOwner{Group: mc.Group}); err != nil {
			return nil, fmt.Errorf("files of group %s: %w", mc.Group, err)
		}
	}
	merged := mergeFiles(group, own)
	if len(merged) == 0 {
		return nil, nil
	}
	d := fileData(mc, address, tunnel)
	out := make([]wire.File, 0, len(merged))
	for _, f := range merged {
		content := f.Content
		if f.Template {
			t, err := parseFileTemplate(f.Content)
			if err == nil {
				content, err = renderFile(t, d)
			}
			if err != nil {
				return nil, fmt.Errorf("template %s: %w", f.Path, err)
			}
		}
		out = append(out, wire.File{Path: f.Path, Mode: f.Mode, UID: f.UID, GID: f.GID, Content: content})
	}
	if err := wire.CheckFiles(out); err != nil {
		return nil, fmt.Errorf("files of machine %s with its group's: %w", short(mc.ID), err)
	}
	return out, nil
}

// mergeFiles lays own over group: a group file is dropped when own has
// the same path, or a path above or below it. The result is sorted.
func mergeFiles(group, own []*store.File) []*store.File {
	out := slices.Clone(own)
	for _, g := range group {
		if !slices.ContainsFunc(own, func(o *store.File) bool { return clashes(o.Path, g.Path) }) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *store.File) int { return strings.Compare(a.Path, b.Path) })
	return out
}

func clashes(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

func fileData(mc *store.Machine, address string, tunnel *wire.TunnelPlan) *FileData {
	d := &FileData{Name: mc.Name, ID: mc.ID, Group: mc.Group, MACs: slices.Clone(mc.Hints.MACs)}
	if host, _, err := net.SplitHostPort(address); err == nil {
		d.Address = host
	} else {
		d.Address = address
	}
	if tunnel != nil {
		if p, err := netip.ParsePrefix(tunnel.Address); err == nil {
			d.TunnelAddress = p.Addr().String()
		} else {
			d.TunnelAddress = tunnel.Address
		}
	}
	return d
}
