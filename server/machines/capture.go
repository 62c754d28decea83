package machines

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

var _ api.CaptureService = (*Manager)(nil)

// attesting reports attestations in progress; *attest.Server implements
// it next to Attestations.
type attesting interface {
	Attesting(machineID string) bool
}

// CaptureImage turns the machine's iSCSI or NFS root into a new version
// of image name, so that a template machine can be rolled out to others.
//
// The machine must be powered off: no attestation of it in progress and
// no iSCSI session logged in to its root. Capture then withdraws the
// root (atomically with the session check, roots.Service.ReleaseIdle),
// so the machine gets it back only by attesting again, under a fence
// (roots.Service.Fence: refused while the machine is booting, a boot
// meanwhile waits for the capture to end), and stores the
// volume's filesystem after e2fsck -fn finds it clean (image.Capture).
// A running machine is refused with api.ErrConflict saying so; so is a
// filesystem that is not clean.
//
// An NFS root is captured as the machine saw it: its overlay upper
// merged with the base it was made on (whiteouts and opaque directories
// applied), imported as a directory tree. The machine must be powered
// off: not attesting, and not exported with an active tunnel peer
// (roots.Service.Hold refuses it with roots.ErrInUse, answered as
// api.ErrConflict); the root is then withdrawn and held unchanged until
// the import ends. Volatile roots are refused with api.ErrInvalid. The
// capture is audited before it takes effect.
func (m *Manager) CaptureImage(ctx context.Context, name, ref string) (*api.Image, error) {
	const action = "image-capture"
	reason := "image " + name
	if m.images == nil || m.volumes == nil || m.roots == nil {
		return nil, fmt.Errorf("%w: this server keeps no images or volumes", api.ErrUnavailable)
	}
	mc, err := m.resolve(ctx, ref)
	if err == nil {
		mc.Root, err = store.EffectiveRoot(ctx, m.store, mc)
	}
	if err == nil {
		err = m.capturable(mc)
	}
	if err != nil {
		err = toAPI(err)
		m.record(ctx, action, idOf(mc), reason, err)
		return nil, err
	}
	var im *image.Image
	err = m.change(ctx, action, mc.ID, reason, func() error {
		if mc.Root.Kind == wire.RootNFS {
			im, err = m.captureNFS(ctx, name, mc)
			return err
		}
		release, err := m.roots.Fence(mc.ID)
		if errors.Is(err, roots.ErrInUse) {
			return fmt.Errorf("%w: machine %.12s is running (%v): power it off first", api.ErrConflict, mc.ID, err)
		}
		if err != nil {
			return toAPI(err)
		}
		defer release()
		if err := m.roots.ReleaseIdle(ctx, mc.ID); err != nil {
			if errors.Is(err, roots.ErrInUse) {
				return fmt.Errorf("%w: machine %.12s is running (%v): power it off first", api.ErrConflict, mc.ID, err)
			}
			return toAPI(err)
		}
		meta, err := m.volumes.Meta(mc.ID)
		if err != nil {
			return toAPI(err)
		}
		vol, err := m.volumes.Open(mc.ID, meta.Base)
		if err != nil {
			return toAPI(err)
		}
		defer vol.Close()
		im, err = m.images.Capture(ctx, name, vol, vol.Size())
		return toAPI(err)
	})
	if err != nil {
		return nil, err
	}
	m.logger.Info("image captured", "name", name, "machine", mc.ID, "digest", im.Digest)
	view := imageView(*im)
	return &view, nil
}

// capturable refuses a capture decided before anything changes: a root
// kind that has no volume, a machine with no volume, or one attesting.
func (m *Manager) capturable(mc *store.Machine) error {
	switch mc.Root.Kind {
	case wire.RootISCSI:
		if _, err := m.volumes.Meta(mc.ID); err != nil {
			return fmt.Errorf("machine %.12s has no root volume yet (it has not booted its iSCSI root): %w", mc.ID, err)
		}
	case wire.RootNFS:
	default:
		return fmt.Errorf("%w: machine %.12s has a %s root, which keeps no writes to capture: only iSCSI and NFS roots can be captured", api.ErrInvalid, mc.ID, mc.Root.Kind)
	}
	if a, ok := m.attestations.(attesting); ok && a.Attesting(mc.ID) {
		return fmt.Errorf("%w: machine %.12s is attesting (booting): power it off first", api.ErrConflict, mc.ID)
	}
	return nil
}

// captureNFS holds the machine's NFS root (refused while the machine uses
// it) and imports its upper merged with its base as image name.
func (m *Manager) captureNFS(ctx context.Context, name string, mc *store.Machine) (*image.Image, error) {
	release, err := m.roots.Hold(ctx, mc.ID)
	if errors.Is(err, roots.ErrInUse) {
		return nil, fmt.Errorf("%w: machine %.12s is running (%v): power it off first", api.ErrConflict, mc.ID, err)
	}
	if err != nil {
		return nil, toAPI(err)
	}
	defer release()
	var im *image.Image
	err = m.roots.Merged(ctx, mc.ID, mc.Root, func(dir string) (err error) {
		im, err = m.images.Import(ctx, name, dir, nil)
		return err
	})
	if err != nil {
		return nil, toAPI(err)
	}
	return im, nil
}
