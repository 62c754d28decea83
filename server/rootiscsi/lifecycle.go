package rootiscsi

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/wire"
)

var _ roots.Provider = (*Provider)(nil)

// Has reports whether the machine has a volume on the server.
func (p *Provider) Has(machineID string) bool {
	_, err := p.cfg.Volumes.Meta(machineID)
	return err == nil
}

// Reset puts the machine's volume back to its base, keeping its
// snapshots. When plan, the machine's effective root, now names another
// image (not a version of the volume's), the volume starts afresh on
// that image's base instead. Withdraw
// the machine's target first (Release): an open volume is busy.
func (p *Provider) Reset(ctx context.Context, machineID string, plan wire.RootPlan) error {
	meta, err := p.cfg.Volumes.Meta(machineID)
	if err != nil {
		return err
	}
	if name := plan.Params[wire.ImageParam]; plan.Kind == wire.RootISCSI && name != "" {
		if im, err := p.cfg.Images.Resolve(name, meta.Base); err == nil && im.Digest != meta.Base {
			return p.cfg.Volumes.Rebase(ctx, machineID, im.Digest, "")
		}
	}
	return p.cfg.Volumes.Reset(ctx, machineID)
}

// Snapshot saves the machine's volume as name.
func (p *Provider) Snapshot(_ context.Context, machineID, name string) error {
	return p.cfg.Volumes.Snapshot(machineID, name)
}

// Rollback replaces the machine's volume with snapshot name.
func (p *Provider) Rollback(_ context.Context, machineID, name string) error {
	return p.cfg.Volumes.Rollback(machineID, name)
}

// Delete removes the machine's volume and its snapshots.
func (p *Provider) Delete(_ context.Context, machineID string) error {
	return p.cfg.Volumes.Delete(machineID)
}

// Bases returns the digests of the bases the machines' volumes are made
// on.
func (p *Provider) Bases() (map[string]bool, error) { return p.cfg.Volumes.Bases() }

var _ roots.Upgrader = (*Provider)(nil)

// Upgrade moves the machine's volume onto base, keeping the old content
// as snapshot keepAs unless that is "". Release the machine first.
func (p *Provider) Upgrade(ctx context.Context, machineID, base, keepAs string) error {
	return p.cfg.Volumes.Rebase(ctx, machineID, base, keepAs)
}

// RootBase returns the base the machine's volume is made on; "" without
// a volume.
func (p *Provider) RootBase(machineID string) (string, error) {
	meta, err := p.cfg.Volumes.Meta(machineID)
	if errors.Is(err, volume.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return meta.Base, nil
}

// SnapshotInfo lists the machine's volume snapshots.
func (p *Provider) SnapshotInfo(machineID string) ([]roots.Snapshot, error) {
	info, err := p.cfg.Volumes.SnapshotInfo(machineID)
	if err != nil {
		return nil, err
	}
	out := make([]roots.Snapshot, len(info))
	for i, s := range info {
		out[i] = roots.Snapshot{Name: s.Name, Base: s.Base, Created: s.Created, Size: s.Size}
	}
	return out, nil
}

// DeleteSnapshot removes snapshot name of the machine's volume.
func (p *Provider) DeleteSnapshot(_ context.Context, machineID, name string) error {
	return p.cfg.Volumes.DeleteSnapshot(machineID, name)
}

var (
	_ roots.Holder   = (*Provider)(nil)
	_ roots.Attacher = (*Provider)(nil)
)

// Attached reports whether the machine's initiator has logged in to the
// target its last Prepare installed.
func (p *Provider) Attached(machineID string) bool {
	p.mu.Lock()
	s := p.machines[machineID]
	p.mu.Unlock()
	return s != nil && s.srv.LoggedIn(TargetIQN(machineID))
}

// Hold withdraws the machine's target if no initiator is logged in to it
// (ReleaseIdle: roots.ErrInUse otherwise) and holds its volume closed
// until release: a boot meanwhile fails to open it as busy.
func (p *Provider) Hold(ctx context.Context, machineID string) (func(), error) {
	if err := p.ReleaseIdle(ctx, machineID); err != nil {
		return nil, err
	}
	release, err := p.cfg.Volumes.Hold(machineID)
	if errors.Is(err, volume.ErrBusy) {
		return nil, fmt.Errorf("machine %.12s: its volume is open: %w", machineID, roots.ErrInUse)
	}
	return release, err
}
