package attest

import (
	"context"
	"errors"

	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// Files gives a released machine its configuration files, which travel in
// the sealed credential (wire.Payload.Files). server/machines implements
// it.
type Files interface {
	// ReleaseFiles returns m's files (its group's and its own) rendered
	// for it. address is where it attests from; tunnel is its tunnel
	// plan, nil without one.
	ReleaseFiles(ctx context.Context, m *store.Machine, address string, tunnel *wire.TunnelPlan) ([]wire.File, error)
}

// files returns the machine's files for the payload, or none without a
// Files source. A failure is a refused release ("files", or "audit" when
// the release could not be recorded): the operator sees why in the audit
// trail.
func (x *exchange) files(ctx context.Context, tunnel *wire.TunnelPlan) ([]wire.File, error) {
	if x.s.files == nil {
		return nil, nil
	}
	out, err := x.s.files.ReleaseFiles(ctx, x.machine, x.remote, tunnel)
	if errors.Is(err, audit.ErrNotWritten) {
		return nil, auditFailure(err)
	}
	if err != nil {
		return nil, fail("files", err)
	}
	return out, nil
}
