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
	reason := ""
	if opts.Name != "" || opts.Policy != "" {
		reason = fmt.Sprintf("name=%q policy=%q", opts.Name, opts.Policy)
	}
	mc, err := m.approvable(ctx, ref, opts)
	if err != nil {
		m.record(ctx, "approve", idOf(mc), reason, err)
		return nil, err
	}
	var updated *store.Machine
	err = m.change(ctx, "approve", mc.ID, reason, func() error {
		var err error
		updated, err = m.store.UpdateMachine(ctx, mc.ID, approval(opts))
		return fromStore(nameConflict(err))
	})
	if err != nil {
		return nil, err
	}
	return ViewMachine(updated), nil
}

// approvable checks an approval against the machine as read now; the
// store transaction checks it again against the record it changes.
func (m *Manager) approvable(ctx context.Context, ref string, opts api.ApproveOptions) (*store.Machine, error) {
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
	dry := *mc
	if err := approval(opts)(&dry); err != nil {
		return mc, err
	}
	return mc, m.checkName(ctx, mc.ID, opts.Name)
}

// approval is the change Approve makes to a machine record.
func approval(opts api.ApproveOptions) func(*store.Machine) error {
	return func(x *store.Machine) error {
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
	}
}

// checkName refuses a name another machine than id has.
func (m *Manager) checkName(ctx context.Context, id, name string) error {
	if name == "" {
		return nil
	}
	all, err := m.store.Machines(ctx)
	if err != nil {
		return err
	}
	for _, mc := range all {
		if mc.Name == name && mc.ID != id {
			return fmt.Errorf("%w: name %q: %w (machine %s)", api.ErrConflict, name, store.ErrNameTaken, short(mc.ID))
		}
	}
	return nil
}

// nameConflict maps a taken name to api.ErrConflict.
func nameConflict(err error) error {
	if errors.Is(err, store.ErrNameTaken) && !errors.Is(err, api.ErrConflict) {
		return fmt.Errorf("%w: %w", api.ErrConflict, err)
	}
	return err
}

func idOf(mc *store.Machine) string {
	if mc == nil {
		return ""
	}
	return mc.ID
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

// Revoke refuses the machine from now on, whatever its state, and ends
// its attestations in progress.
func (m *Manager) Revoke(ctx context.Context, ref, reason string) (*api.Machine, error) {
	mc, err := m.revocable(ctx, ref, reason)
	if err != nil {
		m.record(ctx, "revoke", idOf(mc), reason, err)
		return nil, err
	}
	var updated *store.Machine
	err = m.change(ctx, "revoke", mc.ID, reason, func() error {
		var err error
		updated, err = m.store.UpdateMachine(ctx, mc.ID, func(x *store.Machine) error {
			x.State = store.StateRevoked
			x.Reason = reason
			return nil
		})
		return fromStore(err)
	})
	if err != nil {
		return nil, err
	}
	if m.attestations != nil {
		m.attestations.EndRevoked(mc.ID, reason)
	}
	m.removed(ctx, mc.ID)
	return ViewMachine(updated), nil
}

func (m *Manager) revocable(ctx context.Context, ref, reason string) (*store.Machine, error) {
	if len(reason) > maxReason || !printable(reason) {
		return nil, fmt.Errorf("%w: reason must be printable and at most %d bytes", api.ErrInvalid, maxReason)
	}
	return m.resolve(ctx, ref)
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Forget deletes the machine and its secrets and ends its attestations in
// progress; its next boot is unknown.
func (m *Manager) Forget(ctx context.Context, ref string) error {
	_, err := m.forget(ctx, ref, "", nil)
	return err
}

// forget deletes the machine's record, ends its attestations, withdraws
// its access and then runs after (nil: nothing) on its ID. reason is
// audited, before anything is applied.
func (m *Manager) forget(ctx context.Context, ref, reason string, after func(id string) error) (string, error) {
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		m.record(ctx, "forget", "", reason, err)
		return "", err
	}
	err = m.change(ctx, "forget", mc.ID, reason, func() error { return fromStore(m.store.DeleteMachine(ctx, mc.ID)) })
	if err != nil {
		return "", err
	}
	if m.attestations != nil {
		m.attestations.EndForgotten(mc.ID)
	}
	m.removed(ctx, mc.ID)
	if after != nil {
		return mc.ID, after(mc.ID)
	}
	return mc.ID, nil
}
