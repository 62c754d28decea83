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

// CaptureImage turns the machine's iSCSI root into image name, so that a
// template machine can be rolled out to others.
//
// The machine must be powered off: no attestation of it in progress and
// no iSCSI session logged in to its root. Capture then withdraws the
// root (atomically with the session check, roots.Service.ReleaseIdle),
// so the machine gets it back only by attesting again, holds the volume
// open so that a boot meanwhile is refused as busy, and stores the
// volume's filesystem after e2fsck -fn finds it clean (image.Capture).
// A running machine is refused with api.ErrConflict saying so; so is a
// filesystem that is not clean. NFS and volatile roots are refused with
// api.ErrInvalid. The capture is audited before it takes effect.
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
	case wire.RootNFS:
		return fmt.Errorf("%w: machine %.12s has an NFS root: capturing an NFS overlay is not supported yet, only iSCSI roots", api.ErrInvalid, mc.ID)
	default:
		return fmt.Errorf("%w: machine %.12s has a %s root, which keeps no writes to capture: only iSCSI roots can be captured", api.ErrInvalid, mc.ID, mc.Root.Kind)
	}
	if _, err := m.volumes.Meta(mc.ID); err != nil {
		return fmt.Errorf("machine %.12s has no root volume yet (it has not booted its iSCSI root): %w", mc.ID, err)
	}
	if a, ok := m.attestations.(attesting); ok && a.Attesting(mc.ID) {
		return fmt.Errorf("%w: machine %.12s is attesting (booting): power it off first", api.ErrConflict, mc.ID)
	}
	return nil
}
