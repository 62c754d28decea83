package users

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/sealroot/sealroot/server/store"
)

// Login errors. Each is safe to show on the machine's console.
var (
	// ErrLoginFailed means the user name or the password is wrong; which
	// one is not said.
	ErrLoginFailed = errors.New("wrong user name or password")
	// ErrRateLimited means too many failed logins of the user or on the
	// machine: the next try must wait (see RetryAfter).
	ErrRateLimited = errors.New("too many failed logins")
	// ErrRootInUse means the user's root is mounted by another machine.
	ErrRootInUse = errors.New("the user's root is in use on another machine")
	// ErrUnavailable means the login could not be recorded, so it is not
	// granted.
	ErrUnavailable = errors.New("login cannot be recorded")
)

// RetryError is ErrRateLimited with the time to wait.
type RetryError struct{ After time.Duration }

func (e *RetryError) Error() string {
	return fmt.Sprintf("%v: try again in %s", ErrRateLimited, e.After.Round(time.Second))
}
func (e *RetryError) Unwrap() error { return ErrRateLimited }

// Lookup finds users; store.UserStore implements it.
type Lookup interface {
	User(ctx context.Context, name string) (*store.User, error)
}

// Record is one login outcome for the audit log: never the password.
type Record struct {
	User, MachineID string
	Outcome         string // "ok" or "refused"
	Reason          string
}

// CheckerConfig configures a Checker.
type CheckerConfig struct {
	Users Lookup // required
	// Audit records every outcome; an "ok" that cannot be recorded is
	// refused (ErrUnavailable). Nil records nothing.
	Audit func(Record) error
	// PerUser and PerMachine limit failed logins; zero values take
	// LimiterConfig's defaults.
	PerUser, PerMachine LimiterConfig
	// Params are those of the hash verified for unknown users, which
	// should cost what real ones do; default DefaultParams.
	Params *Params
	// Verifier, when set, checks passwords instead of the user list (a
	// site's PAM stack: package users/pam). Users is then unused.
	Verifier Verifier
	// MaxVerifying bounds verifications running at once (each takes the
	// hash's memory, 64 MiB by default); default 2. Others wait.
	MaxVerifying int
}

// Verifier checks a user's password somewhere else than sealroot's user
// list. Verify returns why the login is refused ("" when it is right;
// never the password), or an error when it cannot tell.
type Verifier interface {
	Verify(ctx context.Context, user string, password []byte) (refused string, err error)
}

// Checker decides logins for per-user roots: the password against the
// user list, failures limited per user and per machine. Which machine
// holds a user's root is not its business: that is the store's user-root
// lease, decided in the release transaction. It is safe for concurrent
// use.
type Checker struct {
	users      Lookup
	verifier   Verifier
	audit      func(Record) error
	perUser    *Limiter
	perMachine *Limiter
	// dummy is verified for unknown users, so that they take as long as
	// known ones.
	dummy string
	// verifying holds a slot per verification in progress.
	verifying chan struct{}
}

// NewChecker returns a Checker.
func NewChecker(cfg CheckerConfig) (*Checker, error) {
	p := DefaultParams
	if cfg.Params != nil {
		p = *cfg.Params
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	// The dummy costs a verification like a real hash, and no password
	// matches its all-zero key; making it costs nothing at start.
	dummy := fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(make([]byte, saltLen)), b64.EncodeToString(make([]byte, p.KeyLen)))
	n := cfg.MaxVerifying
	if n <= 0 {
		n = 2
	}
	return &Checker{users: cfg.Users, verifier: cfg.Verifier, audit: cfg.Audit, perUser: NewLimiter(cfg.PerUser),
		perMachine: NewLimiter(cfg.PerMachine), dummy: dummy, verifying: make(chan struct{}, n)}, nil
}

// Login checks user's password typed on machineID: nil when it is right
// and the success could be audited.
func (c *Checker) Login(ctx context.Context, machineID, user string, password []byte) error {
	if w := max(c.perUser.Wait("user:"+user), c.perMachine.Wait(machineID)); w > 0 {
		c.record(Record{User: user, MachineID: machineID, Outcome: "refused", Reason: "rate limited"})
		return &RetryError{After: w}
	}
	select {
	case c.verifying <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("login: %w", ctx.Err())
	}
	refused, err := c.check(ctx, user, password)
	<-c.verifying
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if refused != "" {
		c.perUser.Fail("user:" + user)
		c.perMachine.Fail(machineID)
		c.record(Record{User: user, MachineID: machineID, Outcome: "refused", Reason: refused})
		return ErrLoginFailed
	}
	if c.audit != nil {
		if err := c.audit(Record{User: user, MachineID: machineID, Outcome: "ok"}); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	c.perUser.Succeed("user:" + user)
	c.perMachine.Succeed(machineID)
	return nil
}

// check verifies user's password with the Verifier, else against the
// user list; it returns why a login is refused ("" when it is right), or
// an error when it cannot tell.
func (c *Checker) check(ctx context.Context, user string, password []byte) (string, error) {
	if c.verifier != nil {
		return c.verifier.Verify(ctx, user, password)
	}
	hash := c.dummy
	u, err := c.users.User(ctx, user)
	switch {
	case err == nil:
		hash = u.Hash
	case !errors.Is(err, store.ErrNotFound):
		return "", err
	}
	ok, verr := Verify(hash, password)
	switch {
	case err != nil:
		return "unknown user", nil
	case verr != nil:
		return "stored hash unusable: " + verr.Error(), nil
	case !ok:
		return "wrong password", nil
	}
	return "", nil
}

// record writes a refusal; its failure changes nothing (the login is
// refused either way).
func (c *Checker) record(r Record) {
	if c.audit != nil {
		c.audit(r)
	}
}
