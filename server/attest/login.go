package attest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/users"
	"github.com/sealroot/sealroot/wire"
)

// Logins checks logins for per-user roots; *users.Checker implements it
// (password, rate limits per user and per machine, audit).
type Logins interface {
	Login(ctx context.Context, machineID, user string, password []byte) error
}

// MaxLoginTries is how many logins one attestation may try before it is
// refused (the agent then attests again; the rate limits carry over).
const MaxLoginTries = 5

// checkLogin refuses a per-user root the server cannot serve.
const checkLogin = "login"

// perUser asks for a login when the machine's root is per user and
// returns the user, whose root lease the exchange has claimed (see
// store.LeaseStore), or "" when the root is the machine's own. Wrong
// passwords, rate limits and a root held elsewhere are answered with
// another prompt saying why, up to MaxLoginTries.
func (x *exchange) perUser(ctx context.Context) (string, error) {
	root, err := store.EffectiveRoot(ctx, x.s.store, x.machine)
	if err != nil {
		return "", fail("root", err)
	}
	if root.Params[wire.PerUserParam] != "true" {
		return "", nil
	}
	if x.s.logins == nil || x.s.leases == nil {
		return "", fail(checkLogin, errors.New("the machine's root is per user, but this server has no user logins configured"))
	}
	prompt := &wire.LoginPrompt{}
	for try := 1; ; try++ {
		m, err := x.askPerson(ctx, prompt)
		if err != nil {
			return "", err
		}
		l, ok := m.(*wire.Login)
		if !ok {
			return "", fail("protocol", fmt.Errorf("expected login, got %v", m.Type()))
		}
		prompt, err = x.tryLogin(ctx, l)
		clear(l.Password)
		if err != nil || prompt == nil {
			return l.User, err
		}
		if try >= MaxLoginTries {
			return "", &Failure{Check: checkLogin, Reason: fmt.Sprintf("%s; %d logins refused on this boot", prompt.Reason, try)}
		}
	}
}

// tryLogin checks one login and claims the user's root: it returns nil,
// nil when both succeed, else the next prompt or a refusal.
func (x *exchange) tryLogin(ctx context.Context, l *wire.Login) (*wire.LoginPrompt, error) {
	err := x.s.logins.Login(ctx, x.machineID, l.User, l.Password)
	var retry *users.RetryError
	switch {
	case errors.As(err, &retry):
		return &wire.LoginPrompt{Reason: err.Error(), RetryAfterMillis: retry.After.Milliseconds()}, nil
	case errors.Is(err, users.ErrLoginFailed):
		return &wire.LoginPrompt{Reason: err.Error()}, nil
	case errors.Is(err, users.ErrUnavailable):
		return nil, auditFailure(&Failure{Check: checkAudit, Reason: "the server cannot record logins: try again later", Err: err})
	case err != nil:
		return nil, fmt.Errorf("login: %w", err)
	}
	err = x.s.leases.ClaimUserLease(ctx, l.User, x.machineID, x.claim(), x.s.now())
	var held *store.LeaseHeldError
	if errors.As(err, &held) {
		reason := x.heldReason(ctx, held)
		if err := x.s.audit.Record(audit.Entry{Time: x.s.now(), Actor: "server", Remote: x.remote, MachineID: x.machineID,
			Action: "login", Outcome: "refused", Check: "user-root", Reason: reason}); err != nil {
			x.s.logger.Error("audit log write failed", "error", err)
		}
		return &wire.LoginPrompt{Reason: reason}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim root of user %s: %w", l.User, err)
	}
	x.user = l.User
	return nil, nil
}

// claim names this exchange in the user-root lease it claims.
func (x *exchange) claim() string { return hex.EncodeToString(x.nonce[:8]) }

// heldReason says which machine holds a user's root, by name.
func (x *exchange) heldReason(ctx context.Context, held *store.LeaseHeldError) string {
	name := held.Lease.MachineID
	if m, err := x.s.store.Machine(ctx, held.Lease.MachineID); err == nil && m.Name != "" {
		name = fmt.Sprintf("%s (%.12s)", m.Name, m.ID)
	}
	return fmt.Sprintf("the root of user %s is in use on machine %s since %s: log out there (reboot it), or ask an operator to run: sealroot user free %s",
		held.Lease.User, name, held.Lease.Since.UTC().Format("2006-01-02 15:04 MST"), held.Lease.User)
}

// dropClaim frees the user-root lease x claimed when its release failed,
// if it is still x's claim.
func (x *exchange) dropClaim() {
	if x.user == "" {
		return
	}
	if _, err := x.s.leases.FreeUserLease(context.Background(), x.user, x.claim()); err != nil && !errors.Is(err, store.ErrNotFound) {
		x.s.logger.Error("free claimed user root", "machine", x.machineID, "user", x.user, "error", err)
	}
}

// heldFailure turns a lease lost between the claim and the release into
// a refusal the agent shows.
func (x *exchange) heldFailure(ctx context.Context, err error) error {
	var held *store.LeaseHeldError
	switch {
	case errors.As(err, &held):
		return &Failure{Check: "user-root", Reason: x.heldReason(ctx, held), Err: err}
	case errors.Is(err, store.ErrLeaseFreed):
		return &Failure{Check: "user-root", Reason: fmt.Sprintf("the root of user %s was freed by an operator during the login: log in again", x.user), Err: err}
	}
	return err
}
