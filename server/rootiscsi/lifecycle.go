package rootiscsi

import (
	"context"

	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/wire"
)

var _ roots.Provider = (*Provider)(nil)

// Has reports whether the machine has a volume on the server.
func (p *Provider) Has(machineID string) bool {
	_, err := p.cfg.Volumes.Meta(machineID)
	return err == nil
}

// Reset puts the machine's volume back to its base. When plan, the
// machine's effective root, now names another image, the volume is
// deleted instead and made from that image at the next boot. Withdraw
// the machine's target first (Release): an open volume is busy.
func (p *Provider) Reset(ctx context.Context, machineID string, plan wire.RootPlan) error {
	meta, err := p.cfg.Volumes.Meta(machineID)
	if err != nil {
		return err
	}
	if name := plan.Params[wire.ImageParam]; plan.Kind == wire.RootISCSI && name != "" {
		if im, err := p.cfg.Images.Get(name); err == nil && im.Digest != meta.Base {
			return p.cfg.Volumes.Delete(machineID)
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
