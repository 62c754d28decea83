package attest

import (
	"context"

	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// Roots prepares released machines' root storage; *roots.Service
// implements it.
type Roots interface {
	// Prepare readies the machine's root for the boot being released and
	// returns the plan for the agent (it replaces the stored plan in the
	// payload) and the boot's root secrets (wire.Secret* names), which
	// are merged into the payload's secrets over the operator's.
	Prepare(ctx context.Context, req roots.Request) (plan wire.RootPlan, secrets map[string][]byte, err error)
}

// root asks the root service for the machine's plan and secrets, or
// returns the stored plan when there is none.
func (x *exchange) root(ctx context.Context, tunnel *wire.TunnelPlan) (wire.RootPlan, map[string][]byte, error) {
	root, err := store.EffectiveRoot(ctx, x.s.store, x.machine)
	if err != nil {
		return wire.RootPlan{}, nil, fail("root", err)
	}
	if x.chosen != nil {
		root = *x.chosen // the menu entry chosen, offered from the same record
	}
	if x.s.roots == nil {
		return root, nil, nil
	}
	req := roots.Request{MachineID: x.machineID, Plan: root, RemoteAddr: x.remote, Tunnel: tunnel}
	if x.user != "" {
		req.Key, req.User, req.Exchange = roots.UserRootKey(x.user), x.user, x.claim()
	}
	plan, secrets, err := x.s.roots.Prepare(ctx, req)
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

// withdraw takes the machine's tunnel peer and root away when it may no
// longer have them.
func (s *Server) withdraw(machineID string) {
	if s.withdrawer == nil {
		return
	}
	if err := s.withdrawer.Withdraw(context.Background(), machineID); err != nil {
		s.logger.Error("withdraw access", "machine", machineID, "error", err)
	}
}
