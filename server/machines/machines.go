// Package machines is sealroot's machine-management service: the operator's
// view of enrolled machines (approve, revoke, forget), their secrets, their
// root plans and groups, and the base images and machines' roots on the
// server. It implements api.Service and api.ImageService over a
// store.Store and a roots.Service, answering in the API's view types
// (ViewMachine: the record never leaves the server), encrypts secrets with a
// secrets.Box before they reach the store and writes every change to the
// audit log, naming secrets but never their values.
//
// # Machine references
//
// Operators name a machine by its full ID, by a unique prefix of at least 8
// hex digits of its ID, or by its exact name. A reference that matches
// several machines (as prefix or name) fails with api.ErrAmbiguous.
//
// # Audit
//
// Every change and every read of secret names or values is recorded, with
// the actor set by WithActor ("operator" by default) and outcome "ok",
// "refused" (invalid argument, unknown or ambiguous machine, wrong state) or
// "error". Listing machines is not recorded.
//
// The audit fails closed: a change is recorded (outcome "ok", on disk)
// before it is applied, and secrets are recorded before they are handed
// out. When the record cannot be written the operation fails with
// api.ErrUnavailable and changes nothing. A change that fails after its
// record was written (the store transaction refused it, say) gets a second
// record, "refused" or "error", for the same action and machine: it was
// not applied. Refusals decided before anything changes are recorded after
// the fact, and a failure to record them is only logged.
//
// # Attestations in progress
//
// Revoke and Forget end the machine's attestations in progress through
// Attestations (set with SetAttestations), so an exchange whose hello came
// before the change is refused at once rather than at its final check.
//
// # Withdrawing access
//
// A revoked or forgotten machine loses its tunnel peer and root at once
// (Config.Withdraw); the operations on a machine's volume withdraw its
// root first, so the root is closed while it changes.
package machines

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/keyring"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/users"
	"github.com/sealroot/sealroot/server/volume"
)

// DefaultActor is the audit actor when the context names none.
const DefaultActor = "operator"

// ServerActor is the audit actor of the server's own decisions.
const ServerActor = "server"

// minPrefix is the shortest ID prefix accepted as a machine reference.
const minPrefix = 8

// Manager implements api.Service, and api.ImageService when Config.Images
// is set. It is safe for concurrent use.
type Manager struct {
	store    store.Store
	box      *secrets.Box
	keys     *keyring.Keyring // may be nil: secrets encrypted to box alone
	log      *audit.Log       // may be nil: no audit
	logger   hclog.Logger
	withdraw roots.Withdrawer // may be nil

	// The image, volume and root plan operations (images.go, roots.go).
	images  *image.Store
	puller  Puller
	volumes *volume.Manager
	roots   *roots.Service
	// attestations, when set, ends a revoked or forgotten machine's
	// exchanges in progress; set before use.
	attestations Attestations
	// userParams, when set, replaces users.DefaultParams (tests).
	userParams *users.Params
}

// Attestations ends a machine's attestations in progress, each refused
// with why; *attest.Server implements it.
type Attestations interface {
	EndRevoked(machineID, reason string) int
	EndForgotten(machineID string) int
}

// SetAttestations makes Revoke and Forget end the machine's attestations
// in progress through a. Call it before the Manager is used.
func (m *Manager) SetAttestations(a Attestations) { m.attestations = a }

var _ api.Service = (*Manager)(nil)

// Config configures a Manager. Store is required.
type Config struct {
	Store store.Store
	Box   *secrets.Box // encrypts secrets at rest
	// Keyring seals secrets to every member server's recipient (the
	// keyring in the store). When nil and Store implements keyring.Store,
	// New makes one for Box.
	Keyring *keyring.Keyring
	// Audit records every change; nil: no audit (tools and tests).
	Audit  *audit.Log
	Logger hclog.Logger // default discards
	// Withdraw takes a revoked or forgotten machine's tunnel peer and
	// root away at once; nil: nothing to withdraw.
	Withdraw roots.Withdrawer
	// Images, Volumes and Roots serve api.ImageService: base images,
	// machines' volumes and roots, root plans and groups. They are set
	// together or not at all.
	Images  *image.Store
	Volumes *volume.Manager
	Roots   *roots.Service
	// Puller, when set, fetches images from the other servers sharing
	// the store (PullImage); nil: a server of its own.
	Puller Puller
}

// New returns a Manager.
func New(cfg Config) *Manager {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	keys := cfg.Keyring
	if ks, ok := cfg.Store.(keyring.Store); ok && keys == nil && cfg.Box != nil {
		keys = keyring.New(ks, cfg.Box, logger)
	}
	return &Manager{store: cfg.Store, box: cfg.Box, keys: keys, log: cfg.Audit, logger: logger.Named("machines"),
		withdraw: cfg.Withdraw, images: cfg.Images, volumes: cfg.Volumes, roots: cfg.Roots, puller: cfg.Puller}
}

// removed withdraws a revoked or forgotten machine's access.
func (m *Manager) removed(ctx context.Context, machineID string) {
	if m.withdraw == nil {
		return
	}
	if err := m.withdraw.Withdraw(ctx, machineID); err != nil {
		m.logger.Error("withdraw access", "machine", machineID, "error", err)
	}
}

type actorKey struct{}

// WithActor returns a context whose operations are audited as done by actor,
// e.g. "operator:1000" or "agent".
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return DefaultActor
}

// Machines returns every machine, sorted by ID.
func (m *Manager) Machines(ctx context.Context) ([]*api.Machine, error) {
	ms, err := m.store.Machines(ctx)
	if err != nil {
		return nil, err
	}
	return ViewMachines(ms), nil
}

// Machine returns the machine ref names.
func (m *Manager) Machine(ctx context.Context, ref string) (*api.Machine, error) {
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	v := ViewMachine(mc)
	if cs, ok := m.store.(store.ClusterStore); ok {
		homes, err := cs.Homes(ctx)
		if err != nil {
			return nil, err
		}
		v.Home = homes[mc.ID]
	}
	return v, nil
}

// Resolve returns the record of the machine ref names, as Machine
// resolves it.
func (m *Manager) Resolve(ctx context.Context, ref string) (*store.Machine, error) {
	return m.resolve(ctx, ref)
}

// resolve finds the machine ref names: an exact ID wins; otherwise the ID
// prefix and name matches together must be exactly one machine.
func (m *Manager) resolve(ctx context.Context, ref string) (*store.Machine, error) {
	if ref == "" || len(ref) > 128 {
		return nil, fmt.Errorf("%w: machine reference of %d bytes", api.ErrInvalid, len(ref))
	}
	if mc, err := m.store.Machine(ctx, ref); err == nil {
		return mc, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	all, err := m.store.Machines(ctx)
	if err != nil {
		return nil, err
	}
	prefix := strings.ToLower(ref)
	usePrefix := len(prefix) >= minPrefix && isHex(prefix)
	var found []*store.Machine
	for _, mc := range all {
		if mc.Name == ref || (usePrefix && strings.HasPrefix(mc.ID, prefix)) {
			found = append(found, mc)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("machine %q: %w", ref, api.ErrNotFound)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, mc := range found {
		ids[i] = short(mc.ID)
	}
	return nil, fmt.Errorf("machine %q: %w: matches %s", ref, api.ErrAmbiguous, strings.Join(ids, ", "))
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// short abbreviates an ID for messages.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// change records action on machineID first and applies it only when the
// record is on disk (else api.ErrUnavailable); an apply that fails is
// recorded again with its error.
func (m *Manager) change(ctx context.Context, action, machineID, reason string, apply func() error) error {
	if err := m.recordFirst(ctx, action, machineID, reason); err != nil {
		return err
	}
	if err := apply(); err != nil {
		m.record(ctx, action, machineID, reason, err)
		return err
	}
	return nil
}

// recordFirst writes the audit entry (outcome "ok") of an operation about
// to take effect. Its error wraps api.ErrUnavailable and the audit error:
// the operation must not take effect.
func (m *Manager) recordFirst(ctx context.Context, action, machineID, reason string) error {
	actor := actorFrom(ctx)
	if m.log == nil {
		m.logger.Info(action, "machine", machineID, "actor", actor)
		return nil
	}
	e := audit.Entry{Actor: actor, MachineID: machineID, Action: action, Outcome: "ok", Reason: reason}
	if err := m.log.Record(e); err != nil {
		m.logger.Error("audit log write failed: operation refused", "action", action, "machine", machineID, "error", err)
		what := action
		if machineID != "" {
			what += " of machine " + short(machineID)
		}
		return fmt.Errorf("%w: %s not done: %w", api.ErrUnavailable, what, err)
	}
	m.logger.Info(action, "machine", machineID, "actor", actor)
	return nil
}

// record writes an audit entry for an operation on machineID that ended
// with err, after the fact; a failure to write it is logged.
func (m *Manager) record(ctx context.Context, action, machineID, reason string, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, api.ErrInvalid), errors.Is(err, api.ErrNotFound),
		errors.Is(err, api.ErrAmbiguous), errors.Is(err, api.ErrConflict):
		outcome, reason = "refused", err.Error()
	default:
		outcome, reason = "error", err.Error()
	}
	actor := actorFrom(ctx)
	if err == nil {
		m.logger.Info(action, "machine", machineID, "actor", actor)
	}
	if m.log == nil {
		return
	}
	e := audit.Entry{Actor: actor, MachineID: machineID, Action: action, Outcome: outcome, Reason: reason}
	if aerr := m.log.Record(e); aerr != nil {
		m.logger.Error("audit log write failed", "action", action, "machine", machineID, "error", aerr)
	}
}
