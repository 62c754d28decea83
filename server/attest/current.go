package attest

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/store"
)

// Refusals of an exchange whose machine record changed after its hello.
const (
	checkRevoked   = "revoked"
	checkForgotten = "forgotten"
	checkStale     = "stale-record"
	checkAudit     = "audit"
)

// commit applies fn to the machine's current record in the store
// transaction that stores it, if the record is still the one this
// exchange read at hello (same Version). Otherwise nothing is stored and
// the exchange is refused: the machine was revoked or forgotten, or
// something its release depends on changed (approval, policy, root,
// secrets), and the agent must start again.
func (x *exchange) commit(ctx context.Context, fn func(*store.Machine) error) (*store.Machine, error) {
	m, err := x.s.store.UpdateMachineRecord(ctx, x.machineID, func(m *store.Machine) error {
		if m.State == store.StateRevoked || m.Version != x.machine.Version {
			return staleRecord(m)
		}
		return fn(m)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, forgotten()
	}
	return m, err
}

// commitRelease is commit for the release: with a lease store it also,
// in the same transaction, confirms the user-root lease x claimed (the
// user's root must still be leased to this machine by this exchange) and
// frees the machine's leases from earlier boots.
func (x *exchange) commitRelease(ctx context.Context, fn func(*store.Machine) error) (*store.Machine, error) {
	if x.s.leases == nil || (x.user == "" && !x.holdsLease(ctx)) {
		return x.commit(ctx, fn) // batched with other releases
	}
	claim := ""
	if x.user != "" {
		claim = x.claim()
	}
	m, err := x.s.leases.ReleaseWithLease(ctx, x.machineID, x.user, claim, func(m *store.Machine) error {
		if m.State == store.StateRevoked || m.Version != x.machine.Version {
			return staleRecord(m)
		}
		return fn(m)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, forgotten()
	}
	if err != nil {
		return nil, x.heldFailure(ctx, err)
	}
	return m, nil
}

// holdsLease reports whether the machine holds a user-root lease from an
// earlier boot (or cannot tell), which its release must free.
func (x *exchange) holdsLease(ctx context.Context) bool {
	ls, err := x.s.leases.UserLeases(ctx)
	if err != nil {
		return true
	}
	for _, l := range ls {
		if l.MachineID == x.machineID {
			return true
		}
	}
	return false
}

// allowedReason is the audit reason of a release: the policy's, with the
// user whose root the machine mounts.
func allowedReason(reason, user string) string {
	if user == "" {
		return reason
	}
	return reason + "; root of user " + user
}

// current refuses, before the release prepares a tunnel peer or a root,
// when the record changed since hello; commit checks again, atomically.
func (x *exchange) current(ctx context.Context) error {
	state, version, err := x.s.store.MachineVersion(ctx, x.machineID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return forgotten()
	case err != nil:
		return fmt.Errorf("load machine: %w", err)
	case state == store.StateRevoked || version != x.machine.Version:
		m, err := x.s.store.MachineRecord(ctx, x.machineID) // for the refusal's words
		switch {
		case errors.Is(err, store.ErrNotFound):
			return forgotten()
		case err != nil:
			return fmt.Errorf("load machine: %w", err)
		}
		return staleRecord(m)
	}
	return nil
}

// staleRecord is the refusal for an exchange whose hello saw an older m.
func staleRecord(m *store.Machine) *Failure {
	if m.State == store.StateRevoked {
		return revokedDuring(m.Reason)
	}
	return &Failure{Check: checkStale, Reason: fmt.Sprintf(
		"the machine's record changed during attestation (now %s): attest again", m.State)}
}

func revokedDuring(reason string) *Failure {
	if reason == "" {
		reason = "no reason given"
	}
	return &Failure{Check: checkRevoked, Reason: "machine revoked by an operator during attestation: " + reason}
}

func forgotten() *Failure {
	return &Failure{Check: checkForgotten, Reason: "machine forgotten by an operator during attestation"}
}

// EndRevoked ends machineID's attestations in progress after an operator
// revoked it: each is refused (check "revoked", with reason) whatever
// message it waits for or step it is in, and releases nothing. It returns
// how many it ended. The refusal does not depend on it: every release and
// state change is checked against the current record when committed; this
// only ends them at once.
func (s *Server) EndRevoked(machineID, reason string) int {
	return s.live.end(machineID, revokedDuring(reason))
}

// EndForgotten is EndRevoked for a forgotten machine (check "forgotten").
func (s *Server) EndForgotten(machineID string) int {
	return s.live.end(machineID, forgotten())
}

// auditFailure turns an audit log that cannot be written into a refusal
// the agent retries; other errors pass unchanged.
func auditFailure(err error) error {
	if errors.Is(err, audit.ErrNotWritten) {
		return &Failure{Check: checkAudit, Reason: "the server cannot write its audit log, so it releases nothing: try again later", Err: err}
	}
	return err
}
