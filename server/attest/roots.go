package attest

import (
	"context"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// RootProvider serves released machines their root storage; package
// server/rootiscsi implements it for iSCSI roots.
type RootProvider interface {
	// Prepare readies m's root for the boot being released and returns
	// the plan for the agent (it replaces m.Root in the payload) and the
	// boot's root secrets (wire.Secret* names), which are merged into the
	// payload's secrets over the operator's. tunnel is the machine's
	// tunnel plan, nil without one; m.LastAddress is the address the
	// machine attests from.
	Prepare(ctx context.Context, m *store.Machine, tunnel *wire.TunnelPlan) (plan wire.RootPlan, secrets map[string][]byte, err error)
	// Release withdraws machineID's root access, if any.
	Release(ctx context.Context, machineID string) error
}

// root asks the root provider for the machine's plan and secrets, or
// returns the stored plan when there is no provider.
func (x *exchange) root(ctx context.Context, tunnel *wire.TunnelPlan) (wire.RootPlan, map[string][]byte, error) {
	m := *x.machine
	root, err := store.EffectiveRoot(ctx, x.s.store, &m)
	if err != nil {
		return wire.RootPlan{}, nil, fail("root", err)
	}
	m.Root = root
	if x.s.roots == nil {
		return m.Root, nil, nil
	}
	m.LastAddress = x.remote
	m.Hints = x.hello.Hints
	plan, secrets, err := x.s.roots.Prepare(ctx, &m, tunnel)
	if err != nil {
		return wire.RootPlan{}, nil, fail("root", err)
	}
	return plan, secrets, nil
}

// mergeSecrets adds the root provider's secrets to the operator's; the
// provider's win.
func mergeSecrets(operator, root map[string][]byte) map[string][]byte {
	if len(root) == 0 {
		return operator
	}
	if operator == nil {
		operator = make(map[string][]byte, len(root))
	}
	for k, v := range root {
		operator[k] = v
	}
	return operator
}

// dropRoot withdraws the machine's root access when it may no longer
// have it.
func (s *Server) dropRoot(machineID string) {
	if s.roots == nil {
		return
	}
	if err := s.roots.Release(context.Background(), machineID); err != nil {
		s.logger.Error("release root", "machine", machineID, "error", err)
	}
}
