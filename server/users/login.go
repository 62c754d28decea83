package users

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
	// MaxVerifying bounds verifications running at once (each takes the
	// hash's memory, 64 MiB by default); default 2. Others wait.
	MaxVerifying int
}

// Checker decides logins for per-user roots: the password against the
// user list, failures limited per user and per machine, and each user's
// root held by one machine at a time. It is safe for concurrent use.
type Checker struct {
	users      Lookup
	audit      func(Record) error
	perUser    *Limiter
	perMachine *Limiter
	// dummy is verified for unknown users, so that they take as long as
	// known ones.
	dummy string
	// verifying holds a slot per verification in progress.
	verifying chan struct{}

	mu    sync.Mutex
	holds map[string]string // user -> machine ID holding the user's root
}

// NewChecker returns a Checker.
func NewChecker(cfg CheckerConfig) (*Checker, error) {
	p := DefaultParams
	if cfg.Params != nil {
		p = *cfg.Params
	}
	dummy, err := Hash([]byte("sealroot-no-such-user"), p, nil)
	if err != nil {
		return nil, err
	}
	n := cfg.MaxVerifying
	if n <= 0 {
		n = 2
	}
	return &Checker{users: cfg.Users, audit: cfg.Audit, perUser: NewLimiter(cfg.PerUser),
		perMachine: NewLimiter(cfg.PerMachine), dummy: dummy, verifying: make(chan struct{}, n),
		holds: map[string]string{}}, nil
}

// Login checks user's password typed on machineID and, when it is right
// and no other machine holds the user's root, gives the root to
// machineID until Release. A machine logging in again keeps its hold.
func (c *Checker) Login(ctx context.Context, machineID, user string, password []byte) error {
	if w := max(c.perUser.Wait("user:"+user), c.perMachine.Wait(machineID)); w > 0 {
		c.record(Record{User: user, MachineID: machineID, Outcome: "refused", Reason: "rate limited"})
		return &RetryError{After: w}
	}
	hash := c.dummy
	u, err := c.users.User(ctx, user)
	switch {
	case err == nil:
		hash = u.Hash
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("login: %w", err)
	}
	select {
	case c.verifying <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("login: %w", ctx.Err())
	}
	ok, verr := Verify(hash, password)
	<-c.verifying
	if err != nil || verr != nil || !ok {
		c.perUser.Fail("user:" + user)
		c.perMachine.Fail(machineID)
		reason := "wrong password"
		switch {
		case err != nil:
			reason = "unknown user"
		case verr != nil:
			reason = "stored hash unusable: " + verr.Error()
		}
		c.record(Record{User: user, MachineID: machineID, Outcome: "refused", Reason: reason})
		return ErrLoginFailed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if holder := c.holds[user]; holder != "" && holder != machineID {
		c.record(Record{User: user, MachineID: machineID, Outcome: "refused", Reason: "root in use on machine " + short(holder)})
		return fmt.Errorf("%w (machine %s): log out there, or have the operator free it", ErrRootInUse, short(holder))
	}
	if c.audit != nil {
		if err := c.audit(Record{User: user, MachineID: machineID, Outcome: "ok"}); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	c.perUser.Succeed("user:" + user)
	c.perMachine.Succeed(machineID)
	c.holds[user] = machineID
	return nil
}

// record writes a refusal; its failure changes nothing (the login is
// refused either way).
func (c *Checker) record(r Record) {
	if c.audit != nil {
		c.audit(r)
	}
}

// Holder returns the machine holding user's root, or "".
func (c *Checker) Holder(user string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holds[user]
}

// Release frees the roots machineID holds (it shut down, was withdrawn
// or its hold was freed by the operator) and returns their users.
func (c *Checker) Release(machineID string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var freed []string
	for u, m := range c.holds {
		if m == machineID {
			delete(c.holds, u)
			freed = append(freed, u)
		}
	}
	return freed
}

// Free frees user's root whichever machine holds it (the operator's
// override) and returns that machine, or "".
func (c *Checker) Free(user string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.holds[user]
	delete(c.holds, user)
	return m
}

func short(id string) string { return id[:min(len(id), 12)] }
