// Package letgo ends a user-root lease once the machine holding it has
// really let go of the root, so that the user can log in elsewhere
// without an operator running `sealroot user free`.
//
// # When a machine has let go
//
// A machine has let go of a user's root when the iSCSI session of the
// root's target ended and either
//
//   - the initiator logged out (a Logout Request closing the session), or
//   - no session came back within Grace of the end, and the machine's
//     tunnel peer (if it has one) has had no handshake for Grace. The
//     target's pings end a dead session in 15-20 s; WireGuard handshakes
//     every two minutes while traffic flows, so a machine that is off has
//     none for Grace (default 3 min), while one whose session dropped in
//     a network blip still has. Counting from the end as well keeps a
//     server restart safe: its fresh tunnel device knows no handshake
//     yet, and running machines get Grace to log in again.
//
// An NFS user root has no session the server sees end: the NFS provider
// reports each export of a user's root (rootnfs.Config.UserRootExported)
// as an end without a logout, and the machine has let go once its tunnel
// peer (NFS roots always have one) has had no handshake for Grace; the
// Watcher looks again every time the peer's last handshake would make
// it so. A machine that shut down cleanly is thus freed after Grace, not
// at once.
//
// The Watcher then withdraws the root's target, only if no session is
// logged in to it and it is still served to the boot that ended
// (atomically, rootiscsi.Provider.WithdrawLetGo; for NFS only the boot is
// checked, rootnfs.Provider.WithdrawLetGo), and frees the lease in
// the store transaction that checks it is still that boot's
// (store.LeaseStore.FreeLetGoLease): a machine that booted again, or a
// lease the user claimed elsewhere meanwhile, is left alone.
//
// # Lifetime
//
// Ended may be called from any goroutine and never blocks; Run decides
// the ends reported, each when it is due, until its context ends.
package letgo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
)

// DefaultGrace is how long a lost session and a silent tunnel peer must
// last before the machine counts as gone: more than WireGuard's two
// minutes between handshakes.
const DefaultGrace = 3 * time.Minute

// Targets withdraws a user root's target once its machine let go;
// *rootiscsi.Provider and *rootnfs.Provider implement it (the server
// joins them).
type Targets interface {
	WithdrawLetGo(ctx context.Context, e roots.UserRootEnd) error
}

// Leases frees a lease still held by the boot that let go;
// store.LeaseStore implements it.
type Leases interface {
	FreeLetGoLease(ctx context.Context, user, machineID, exchange string) (*store.UserLease, error)
}

// Auditor records the leases freed; *audit.Log implements it.
type Auditor interface {
	Record(audit.Entry) error
}

// Config configures a Watcher.
type Config struct {
	Targets Targets // required
	Leases  Leases  // required
	// LastHandshake returns the time of the last handshake of the
	// machine's tunnel peer; ok is false when it has no peer. Nil: no
	// machine has a tunnel.
	LastHandshake func(machineID string) (last time.Time, ok bool)
	// Grace is how long the session must have been lost, and the tunnel
	// peer silent, after a session ended without a logout. Default
	// DefaultGrace.
	Grace  time.Duration
	Audit  Auditor      // optional
	Logger hclog.Logger // default discards
}

// Watcher decides, for each session of a user root that ended, whether
// its machine let go, and then frees the user's lease.
type Watcher struct {
	cfg  Config
	log  hclog.Logger
	wake chan struct{}

	// mu guards pending.
	mu      sync.Mutex
	pending map[string]due // by user: the latest end reported
}

// due is a reported end and when to decide it.
type due struct {
	end   roots.UserRootEnd
	ended time.Time // reported
	at    time.Time
}

// New returns a Watcher; Run runs it.
func New(cfg Config) (*Watcher, error) {
	if cfg.Targets == nil || cfg.Leases == nil {
		return nil, errors.New("letgo: Targets and Leases are required")
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Watcher{cfg: cfg, log: log.Named("letgo"), wake: make(chan struct{}, 1), pending: map[string]due{}}, nil
}

// Ended reports that a session of a user's root ended
// (rootiscsi.Config.UserRootEnded) or that a user's NFS root was exported
// (rootnfs.Config.UserRootExported), to be decided at once. A later end of
// the same user's root replaces it.
func (w *Watcher) Ended(e roots.UserRootEnd) {
	now := time.Now()
	w.mu.Lock()
	w.pending[e.User] = due{end: e, ended: now, at: now}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run decides the reported ends as they fall due until ctx ends; it
// returns nil then.
func (w *Watcher) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		ends, next := w.takeDue(time.Now())
		for _, d := range ends {
			if at := w.decide(ctx, d); !at.IsZero() {
				w.later(d, at)
			}
		}
		if len(ends) > 0 {
			continue // decisions take time; look at the clock again
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		case <-tick:
		}
		timer.Stop()
	}
}

// takeDue removes and returns the ends due at now, and when the next
// falls due (zero: none pending).
func (w *Watcher) takeDue(now time.Time) (ends []due, next time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for user, d := range w.pending {
		if !d.at.After(now) {
			ends = append(ends, d)
			delete(w.pending, user)
		} else if next.IsZero() || d.at.Before(next) {
			next = d.at
		}
	}
	return ends, next
}

// later decides d again at at, unless a newer end of the user's root
// was reported meanwhile.
func (w *Watcher) later(d due, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pending[d.end.User]; !ok {
		d.at = at
		w.pending[d.end.User] = d
	}
}

// decide frees d's lease if its machine let go. It returns when to look
// again (the machine may still be there, or something failed), or zero.
func (w *Watcher) decide(ctx context.Context, d due) (again time.Time) {
	e := d.end
	log := w.log.With("user", e.User, "machine", e.MachineID)
	silent, tunnel := w.silentUntil(d)
	if now := time.Now(); now.Before(silent) {
		log.Debug("user root session lost: machine may still be there", "tunnel", tunnel, "check_at", silent)
		return silent
	}
	err := w.cfg.Targets.WithdrawLetGo(ctx, e)
	switch {
	case errors.Is(err, roots.ErrInUse), errors.Is(err, roots.ErrNotThatBoot):
		log.Debug("user root in use again: lease kept", "reason", err)
		return time.Time{} // a session that ends reports again
	case err != nil:
		log.Error("withdraw user root", "error", err)
		return time.Now().Add(w.cfg.Grace)
	}
	l, err := w.cfg.Leases.FreeLetGoLease(ctx, e.User, e.MachineID, e.Exchange)
	var held *store.LeaseHeldError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.As(err, &held):
		log.Debug("user root lease no longer that boot's: kept", "reason", err)
		return time.Time{}
	case err != nil:
		log.Error("free user root lease", "error", err)
		return time.Now().Add(w.cfg.Grace)
	}
	reason := reasonOf(e, w.cfg.Grace, tunnel)
	log.Info("user root lease freed: its machine let go", "how", reason, "boot", l.Boot)
	w.record(e, reason)
	return time.Time{}
}

// silentUntil is when d's machine counts as gone: at once after a
// logout; else Grace after the session ended and, with a tunnel peer,
// Grace after the peer's last handshake, whichever is later.
func (w *Watcher) silentUntil(d due) (at time.Time, tunnel bool) {
	if d.end.LoggedOut {
		return time.Time{}, false
	}
	at = d.ended.Add(w.cfg.Grace)
	if w.cfg.LastHandshake != nil {
		if last, ok := w.cfg.LastHandshake(d.end.MachineID); ok {
			return latest(at, last.Add(w.cfg.Grace)), true
		}
	}
	return at, false
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// reasonOf says how the machine let go.
func reasonOf(e roots.UserRootEnd, grace time.Duration, tunnel bool) string {
	switch {
	case e.LoggedOut:
		return "logged out"
	case tunnel:
		return fmt.Sprintf("session lost, no tunnel handshake for %s", grace)
	}
	return fmt.Sprintf("session lost for %s", grace)
}

func (w *Watcher) record(e roots.UserRootEnd, reason string) {
	if w.cfg.Audit == nil {
		return
	}
	err := w.cfg.Audit.Record(audit.Entry{Time: time.Now(), Actor: "server", MachineID: e.MachineID,
		Action: "user-let-go", Outcome: "ok", Reason: "root of user " + e.User + ": " + reason})
	if err != nil {
		w.log.Error("audit log write failed", "action", "user-let-go", "error", err)
	}
}
