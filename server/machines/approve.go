package machines

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"unicode"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// maxReason bounds a revocation reason.
const maxReason = 1024

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidName reports whether name is a valid machine name.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Approve pins the boot state the machine last reported and marks it
// approved. Only pending and needs-reapproval machines that reported a
// verified boot state can be approved (else api.ErrConflict). PCR 15 is
// never pinned. The reported state is cleared so it cannot be approved
// twice.
func (m *Manager) Approve(ctx context.Context, ref string, opts api.ApproveOptions) (*api.Machine, error) {
	mc, err := m.approve(ctx, ref, opts)
	id := ""
	if mc != nil {
		id = mc.ID
	}
	reason := ""
	if opts.Name != "" || opts.Policy != "" {
		reason = fmt.Sprintf("name=%q policy=%q", opts.Name, opts.Policy)
	}
	m.record(ctx, "approve", id, reason, err)
	if err != nil {
		return nil, err
	}
	return ViewMachine(mc), nil
}

func (m *Manager) approve(ctx context.Context, ref string, opts api.ApproveOptions) (*store.Machine, error) {
	if opts.Name != "" && !ValidName(opts.Name) {
		return nil, fmt.Errorf("%w: machine name %q: want [a-z0-9][a-z0-9-]{0,62}", api.ErrInvalid, opts.Name)
	}
	if !opts.Policy.Valid() {
		return nil, fmt.Errorf("%w: policy %q: want one of %v", api.ErrInvalid, opts.Policy, api.Policies)
	}
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	updated, err := m.store.UpdateMachine(ctx, mc.ID, func(x *store.Machine) error {
		if x.State != store.StatePending && x.State != store.StateNeedsReapproval {
			return fmt.Errorf("%w: machine %s is %s; only pending or needs-reapproval machines can be approved", api.ErrConflict, short(x.ID), x.State)
		}
		if x.Reported == nil {
			return fmt.Errorf("%w: no verified boot state reported yet: boot the machine first", api.ErrConflict)
		}
		x.Approved = pinnable(x.Reported)
		x.Reported = nil
		x.Diff = ""
		x.Reason = ""
		x.State = store.StateApproved
		if opts.Name != "" {
			x.Name = opts.Name
		}
		if opts.Policy != "" {
			x.Policy = store.Policy(opts.Policy)
		}
		if x.Policy == "" {
			x.Policy = store.PolicyPinned
		}
		return nil
	})
	return withConflict(mc, updated, err)
}

// withConflict maps a taken name to api.ErrConflict. On error it still
// returns the resolved machine, for the audit entry.
func withConflict(resolved, updated *store.Machine, err error) (*store.Machine, error) {
	if err == nil {
		return updated, nil
	}
	if errors.Is(err, store.ErrNameTaken) {
		err = fmt.Errorf("%w: %w", api.ErrConflict, err)
	}
	return resolved, fromStore(err)
}

// pinnable copies a boot state without PCR wire.ReleasePCR and its events.
func pinnable(bs *store.BootState) *store.BootState {
	out := &store.BootState{At: bs.At, PCRs: maps.Clone(bs.PCRs)}
	delete(out.PCRs, wire.ReleasePCR)
	for _, e := range bs.Events {
		if e.PCR != wire.ReleasePCR {
			out.Events = append(out.Events, e)
		}
	}
	return out
}

// Revoke refuses the machine from now on, whatever its state.
func (m *Manager) Revoke(ctx context.Context, ref, reason string) (*api.Machine, error) {
	mc, err := m.revoke(ctx, ref, reason)
	id := ""
	if mc != nil {
		id = mc.ID
	}
	m.record(ctx, "revoke", id, reason, err)
	if err != nil {
		return nil, err
	}
	m.removed(ctx, mc.ID)
	return ViewMachine(mc), nil
}

func (m *Manager) revoke(ctx context.Context, ref, reason string) (*store.Machine, error) {
	if len(reason) > maxReason || !printable(reason) {
		return nil, fmt.Errorf("%w: reason must be printable and at most %d bytes", api.ErrInvalid, maxReason)
	}
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	updated, err := m.store.UpdateMachine(ctx, mc.ID, func(x *store.Machine) error {
		x.State = store.StateRevoked
		x.Reason = reason
		return nil
	})
	return withConflict(mc, updated, err)
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Forget deletes the machine and its secrets; its next boot is unknown.
func (m *Manager) Forget(ctx context.Context, ref string) error {
	mc, err := m.resolve(ctx, ref)
	id := ""
	if err == nil {
		id = mc.ID
		err = fromStore(m.store.DeleteMachine(ctx, mc.ID))
	}
	m.record(ctx, "forget", id, "", err)
	if err == nil {
		m.removed(ctx, id)
	}
	return err
}
