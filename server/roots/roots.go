// Package roots is the server's registry of root providers: the
// server-side twin of the agent's root registry (package agent/root). It
// hands each machine's root to the provider of the root's kind, checked
// here once: at release the provider prepares the root and its secrets,
// and every other provider withdraws what it served the machine; the
// operator's lifecycle operations (reset, snapshot, rollback, delete) go
// to the provider that holds the machine's root. Adding a backend is
// adding one Provider.
//
// # Withdrawing access
//
// Withdraw is the one path that takes a machine's access away: its
// tunnel peer and its root. Attestation calls it when a machine's boot
// state changes; machine management when a machine is revoked or
// forgotten.
package roots

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// Request is what a provider needs to prepare one machine's root for the
// boot being released.
type Request struct {
	MachineID string
	// Plan is the machine's effective root plan (its group's when it is
	// in one).
	Plan wire.RootPlan
	// RemoteAddr is the address ("ip:port") the machine attests from.
	RemoteAddr string
	// Tunnel is the machine's tunnel plan, nil without a tunnel.
	Tunnel *wire.TunnelPlan
	// Key, when set, is the key the root is kept under instead of
	// MachineID: a user's per-user root (UserRootKey), which the machine
	// MachineID mounts for this boot.
	Key string
	// User and Exchange, with Key, are the user whose root it is and the
	// exchange releasing this boot (its user-root lease claim,
	// store.UserLease.Exchange): what a provider reports when the
	// machine lets go of the root.
	User, Exchange string
}

// RootKey is the key the request's root is kept under: Key, else the
// machine's ID.
func (r Request) RootKey() string {
	if r.Key != "" {
		return r.Key
	}
	return r.MachineID
}

// UserRootKey is the key of user's per-user root in the providers, which
// key roots by hex IDs: 40 hex digits of a hash of the name, so that it
// can meet no machine ID (64 digits) and no other user's.
func UserRootKey(user string) string {
	sum := sha256.Sum256([]byte("sealroot user root\x00" + user))
	return hex.EncodeToString(sum[:20])
}

// Provider serves machines one or more kinds of root.
type Provider interface {
	// Prepare readies the machine's root for this boot and returns the
	// plan for the agent and the boot's root secrets (wire.Secret*
	// names). The request's plan is of a kind the provider is registered
	// for.
	Prepare(ctx context.Context, req Request) (plan wire.RootPlan, secrets map[string][]byte, err error)
	// Release withdraws the machine's root access, if any.
	Release(ctx context.Context, machineID string) error
	// Has reports whether the provider holds a root of the machine.
	Has(machineID string) bool
	// Reset puts the machine's root back to its image; plan is the
	// machine's effective plan.
	Reset(ctx context.Context, machineID string, plan wire.RootPlan) error
	// Snapshot saves the machine's root as name.
	Snapshot(ctx context.Context, machineID, name string) error
	// Rollback replaces the machine's root with snapshot name.
	Rollback(ctx context.Context, machineID, name string) error
	// Delete removes the machine's root, with its snapshots.
	Delete(ctx context.Context, machineID string) error
	// Bases returns the digests of the image bases the provider's roots
	// are made on; image GC keeps them.
	Bases() (map[string]bool, error)
}

// Withdrawer takes a machine's access away: its tunnel peer and its root.
// *Service implements it.
type Withdrawer interface {
	Withdraw(ctx context.Context, machineID string) error
}

// Peers removes machines' tunnel peers; *tunnel.Tunnel implements it.
type Peers interface {
	Remove(machineID string) error
}

// Kinds providers register for: a root plan's kind, and for a volatile
// root the way its base travels.
const (
	KindISCSI         = wire.RootISCSI
	KindNFS           = wire.RootNFS
	KindVolatileISCSI = wire.RootVolatile + "/" + wire.ViaISCSI
	KindVolatileNFS   = wire.RootVolatile + "/" + wire.ViaNFS
)

// KindOf is the kind of provider that serves plan: its kind, and for a
// volatile root the way its base travels (NFS unless "via" says iscsi).
func KindOf(plan wire.RootPlan) string {
	if plan.Kind != wire.RootVolatile {
		return plan.Kind
	}
	if plan.Params[wire.VolatileVia] == wire.ViaISCSI {
		return KindVolatileISCSI
	}
	return KindVolatileNFS
}

// Errors providers return (or wrap), so that callers map them to their
// own kinds without knowing the provider.
var (
	// ErrNoRoot means no provider holds a root of the machine.
	ErrNoRoot = errors.New("no root on the server")
	// ErrNotFound means a provider has no such root or snapshot.
	ErrNotFound = errors.New("not found")
	// ErrExists means a snapshot of that name exists.
	ErrExists = errors.New("already exists")
	// ErrBadName means a machine ID or snapshot name is malformed.
	ErrBadName = errors.New("invalid name")
	// ErrInUse means the machine is using its root: a session is open.
	ErrInUse = errors.New("root in use")
)

// IdleReleaser is a Provider that can tell whether the machine is using
// its root and withdraw it only if not, atomically: ReleaseIdle fails
// with ErrInUse, changing nothing, while a session is open.
type IdleReleaser interface {
	ReleaseIdle(ctx context.Context, machineID string) error
}

// Bases makes an image, NAME or NAME@vN, available here;
// *basepeer.Puller implements it.
type Bases interface {
	Ensure(ctx context.Context, ref string) error
}

// Config configures a Service.
type Config struct {
	// Providers maps kinds (KindOf) to the provider serving them; one
	// provider may serve several kinds. A kind with no provider, such as
	// "none", passes through Prepare unchanged.
	Providers map[string]Provider
	// Tunnel, when set, loses a machine's peer at Withdraw.
	Tunnel Peers
	// Bases, when set, makes the image a plan names available on this
	// server before its provider readies the root (a server sharing a
	// store fetches a base it lacks from a peer).
	Bases Bases
	// BootGrace is how long after Prepare a machine whose root has not
	// been attached yet (Attacher) counts as booting: Hold leaves it
	// alone. Default: DefaultBootGrace.
	BootGrace time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Service routes machines' roots to their providers. It is safe for
// concurrent use as far as its providers are.
type Service struct {
	byKind map[string]Provider
	all    []Provider // distinct, in the order of their first kind's name
	tunnel Peers
	bases  Bases
	boots  boots // boots in progress against holds (Prepare, Hold)
}

var _ Withdrawer = (*Service)(nil)

// New returns a Service over cfg's providers.
func New(cfg Config) *Service {
	s := &Service{byKind: map[string]Provider{}, tunnel: cfg.Tunnel, bases: cfg.Bases, boots: newBoots(cfg.BootGrace, cfg.Now)}
	kinds := make([]string, 0, len(cfg.Providers))
	for k, p := range cfg.Providers {
		if p != nil {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		p := cfg.Providers[k]
		s.byKind[k] = p
		if !slices.Contains(s.all, p) {
			s.all = append(s.all, p)
		}
	}
	return s
}

// Empty reports whether no provider is registered.
func (s *Service) Empty() bool { return len(s.all) == 0 }

// Prepare hands the machine's root to the provider of its kind and has
// every other provider withdraw what it served the machine. A kind
// without a provider returns req.Plan unchanged, without secrets.
//
// While Hold holds the machine's root (a backup or a capture copying
// it), Prepare waits for the release instead of failing the boot; from
// then on the machine counts as booting for Hold (see Hold).
func (s *Service) Prepare(ctx context.Context, req Request) (wire.RootPlan, map[string][]byte, error) {
	own := s.byKind[KindOf(req.Plan)]
	_, holds := own.(Holder)
	done, err := s.boots.start(ctx, req.MachineID, holds)
	if err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("root of %.12s: %w", req.MachineID, err)
	}
	plan, secrets, err := s.prepare(ctx, own, req)
	done(err == nil)
	return plan, secrets, err
}

func (s *Service) prepare(ctx context.Context, own Provider, req Request) (wire.RootPlan, map[string][]byte, error) {
	for _, p := range s.all {
		if p == own {
			continue
		}
		if err := p.Release(ctx, req.RootKey()); err != nil {
			return wire.RootPlan{}, nil, err
		}
	}
	if own == nil {
		return req.Plan, nil, nil
	}
	if ref := req.Plan.Params[wire.ImageParam]; ref != "" && s.bases != nil {
		if err := s.bases.Ensure(ctx, ref); err != nil {
			return wire.RootPlan{}, nil, fmt.Errorf("root image %s: %w", ref, err)
		}
	}
	return own.Prepare(ctx, req)
}

// Release withdraws the machine's root access from every provider.
func (s *Service) Release(ctx context.Context, machineID string) error {
	var errs []error
	for _, p := range s.all {
		errs = append(errs, p.Release(ctx, machineID))
	}
	return errors.Join(errs...)
}

// ReleaseIdle withdraws the machine's root from every provider, but
// only if the machine is not using it: the providers that can tell
// (IdleReleaser) refuse with ErrInUse while a session is open, and the
// first refusal stops it. Providers that cannot tell are released.
func (s *Service) ReleaseIdle(ctx context.Context, machineID string) error {
	for _, p := range s.all {
		if ir, ok := p.(IdleReleaser); ok {
			if err := ir.ReleaseIdle(ctx, machineID); err != nil {
				return err
			}
		}
	}
	var errs []error
	for _, p := range s.all {
		if _, ok := p.(IdleReleaser); !ok {
			errs = append(errs, p.Release(ctx, machineID))
		}
	}
	return errors.Join(errs...)
}

// Withdraw removes the machine's tunnel peer and withdraws its root.
func (s *Service) Withdraw(ctx context.Context, machineID string) error {
	var err error
	if s.tunnel != nil {
		err = s.tunnel.Remove(machineID)
	}
	return errors.Join(err, s.Release(ctx, machineID))
}

// HasRoot reports whether the provider of kind holds a root of the
// machine (or under the key, for a user's root).
func (s *Service) HasRoot(kind, machineID string) bool {
	if s == nil {
		return false
	}
	p := s.byKind[kind]
	return p != nil && p.Has(machineID)
}

// holder is the provider whose lifecycle operations apply to the
// machine: the provider of its plan's kind, else the first that holds a
// root of it (the machine's root from before its plan changed).
func (s *Service) holder(machineID string, plan wire.RootPlan) (Provider, error) {
	if p := s.byKind[KindOf(plan)]; p != nil {
		return p, nil
	}
	for _, p := range s.all {
		if p.Has(machineID) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("machine %.12s: %w", machineID, ErrNoRoot)
}

// Reset puts the machine's root back to its image.
func (s *Service) Reset(ctx context.Context, machineID string, plan wire.RootPlan) error {
	p, err := s.holder(machineID, plan)
	if err != nil {
		return err
	}
	return p.Reset(ctx, machineID, plan)
}

// Snapshot saves the machine's root as name.
func (s *Service) Snapshot(ctx context.Context, machineID string, plan wire.RootPlan, name string) error {
	p, err := s.holder(machineID, plan)
	if err != nil {
		return err
	}
	return p.Snapshot(ctx, machineID, name)
}

// Rollback replaces the machine's root with snapshot name.
func (s *Service) Rollback(ctx context.Context, machineID string, plan wire.RootPlan, name string) error {
	p, err := s.holder(machineID, plan)
	if err != nil {
		return err
	}
	return p.Rollback(ctx, machineID, name)
}

// Delete removes every root the providers hold of the machine, with
// their snapshots; ErrNoRoot when there is none.
func (s *Service) Delete(ctx context.Context, machineID string) error {
	deleted := 0
	for _, p := range s.all {
		if !p.Has(machineID) {
			continue
		}
		if err := p.Delete(ctx, machineID); err != nil {
			return err
		}
		deleted++
	}
	if deleted == 0 {
		return fmt.Errorf("machine %.12s: %w", machineID, ErrNoRoot)
	}
	return nil
}

// Bases returns the digests of the bases any provider's roots are made
// on.
func (s *Service) Bases() (map[string]bool, error) {
	bases := map[string]bool{}
	for _, p := range s.all {
		b, err := p.Bases()
		if err != nil {
			return nil, err
		}
		for d := range b {
			bases[d] = true
		}
	}
	return bases, nil
}

// Snapshot describes one saved root of a machine.
type Snapshot struct {
	Name    string
	Base    string // digest of the base the snapshot was made on
	Created time.Time
	Size    int64 // bytes on disk, 0 when unknown
}

// Upgrader is what a provider whose roots are made on a base implements
// to move them to another base and to manage their snapshots.
type Upgrader interface {
	// Upgrade moves the machine's root onto base (a digest): the root
	// starts afresh on it; when keepAs is not "" the old root is first
	// saved as that snapshot, with its base, so Rollback returns to it.
	Upgrade(ctx context.Context, machineID, base, keepAs string) error
	// RootBase returns the digest of the base the machine's root is made
	// on, "" when it has none yet.
	RootBase(machineID string) (string, error)
	// SnapshotInfo lists the machine's snapshots.
	SnapshotInfo(machineID string) ([]Snapshot, error)
	// DeleteSnapshot removes snapshot name.
	DeleteSnapshot(ctx context.Context, machineID, name string) error
}

// ErrUnsupported means the machine's root provider cannot do what was
// asked (it has no Upgrader).
var ErrUnsupported = errors.New("not supported by this kind of root")

func (s *Service) upgrader(machineID string, plan wire.RootPlan) (Upgrader, error) {
	p, err := s.holder(machineID, plan)
	if err != nil {
		return nil, err
	}
	u, ok := p.(Upgrader)
	if !ok {
		return nil, fmt.Errorf("machine %.12s (%s root): %w", machineID, KindOf(plan), ErrUnsupported)
	}
	return u, nil
}

// Upgrade moves the machine's root onto base, keeping the old one as
// snapshot keepAs unless that is "".
func (s *Service) Upgrade(ctx context.Context, machineID string, plan wire.RootPlan, base, keepAs string) error {
	u, err := s.upgrader(machineID, plan)
	if err != nil {
		return err
	}
	return u.Upgrade(ctx, machineID, base, keepAs)
}

// RootBase returns the base the machine's root is made on ("" for none).
func (s *Service) RootBase(machineID string, plan wire.RootPlan) (string, error) {
	u, err := s.upgrader(machineID, plan)
	if err != nil {
		return "", err
	}
	return u.RootBase(machineID)
}

// Snapshots lists the machine's snapshots.
func (s *Service) Snapshots(machineID string, plan wire.RootPlan) ([]Snapshot, error) {
	u, err := s.upgrader(machineID, plan)
	if err != nil {
		return nil, err
	}
	return u.SnapshotInfo(machineID)
}

// DeleteSnapshot removes the machine's snapshot name.
func (s *Service) DeleteSnapshot(ctx context.Context, machineID string, plan wire.RootPlan, name string) error {
	u, err := s.upgrader(machineID, plan)
	if err != nil {
		return err
	}
	return u.DeleteSnapshot(ctx, machineID, name)
}

// Holder is a Provider that can hold a machine's written root still for
// a copy (a backup, a capture): Hold fails with ErrInUse, changing
// nothing, while the machine is using its root; otherwise it withdraws
// the root and keeps it from being served or changed until release is
// called (Service.Hold makes a boot meanwhile wait for the release).
type Holder interface {
	Hold(ctx context.Context, machineID string) (release func(), err error)
}

// Attacher is a Holder that can tell whether the machine has attached
// the root its last Prepare handed out (logged in to its iSCSI target,
// or its tunnel peer active for NFS).
type Attacher interface {
	Attached(machineID string) bool
}

// Hold holds the machine's roots still in every provider that is a
// Holder; providers that are not hold no written roots. On an error the
// holds taken are released.
//
// A machine that is booting is refused with ErrInUse, changing nothing,
// so that a backup never fails a boot: one attesting now (SetAttesting),
// or one whose root Prepare handed out less than Config.BootGrace ago
// that has not attached it yet. The check and the hold are one step
// against Prepare: a Prepare that comes after waits for the release.
func (s *Service) Hold(ctx context.Context, machineID string) (func(), error) {
	unhold, err := s.Fence(machineID)
	if err != nil {
		return nil, err
	}
	var releases []func()
	release := func() {
		for _, r := range slices.Backward(releases) {
			r()
		}
		unhold()
	}
	for _, p := range s.all {
		h, ok := p.(Holder)
		if !ok {
			continue
		}
		r, err := h.Hold(ctx, machineID)
		if err != nil {
			release()
			return nil, err
		}
		releases = append(releases, r)
	}
	return release, nil
}

// Merger is a Provider whose roots are directory trees over a base (NFS
// overlays): Merged shows fn a held machine's root as the machine saw
// it, read-only.
type Merger interface {
	Merged(ctx context.Context, machineID string, fn func(dir string) error) error
}

// Merged shows fn the machine's root as a directory tree, read-only; the
// caller holds the root (Hold). ErrUnsupported when the machine's root
// is not a tree.
func (s *Service) Merged(ctx context.Context, machineID string, plan wire.RootPlan, fn func(dir string) error) error {
	p, err := s.holder(machineID, plan)
	if err != nil {
		return err
	}
	mg, ok := p.(Merger)
	if !ok {
		return fmt.Errorf("machine %.12s (%s root): %w", machineID, KindOf(plan), ErrUnsupported)
	}
	return mg.Merged(ctx, machineID, fn)
}
