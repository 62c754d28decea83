package users

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/store"
)

type userMap map[string]*store.User

func (m userMap) User(_ context.Context, name string) (*store.User, error) {
	if u, ok := m[name]; ok {
		return u, nil
	}
	return nil, fmt.Errorf("user %s: %w", name, store.ErrNotFound)
}

type auditRecords struct {
	mu   sync.Mutex
	recs []Record
	fail bool
}

func (a *auditRecords) add(r Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return errors.New("disk full")
	}
	a.recs = append(a.recs, r)
	return nil
}

func newChecker(t *testing.T, now *time.Time) (*Checker, *auditRecords) {
	t.Helper()
	h, err := Hash([]byte("alice-pw"), testParams, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &auditRecords{}
	clock := func() time.Time { return *now }
	c, err := NewChecker(CheckerConfig{Users: userMap{"alice": {Name: "alice", Hash: h}}, Audit: a.add, Params: &testParams,
		PerUser:    LimiterConfig{Free: 3, Base: time.Second, Now: clock},
		PerMachine: LimiterConfig{Free: 5, Base: time.Second, Now: clock}})
	if err != nil {
		t.Fatal(err)
	}
	return c, a
}

func TestLogin(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	c, a := newChecker(t, &now)
	if err := c.Login(ctx, "m1", "alice", []byte("alice-pw")); err != nil {
		t.Fatalf("right password: %v", err)
	}
	// The checker holds no root: another machine may log in too (the
	// store's user-root lease decides who mounts it).
	if err := c.Login(ctx, "m2", "alice", []byte("alice-pw")); err != nil {
		t.Errorf("second machine: %v", err)
	}
	if err := c.Login(ctx, "m2", "alice", []byte("wrong")); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("wrong password: %v, want ErrLoginFailed", err)
	}
	if err := c.Login(ctx, "m2", "alice", []byte("alice-pw")); err != nil {
		t.Errorf("after a failure: %v", err)
	}
	for _, r := range a.recs {
		if strings.Contains(fmt.Sprintf("%+v", r), "alice-pw") {
			t.Fatalf("audit record holds the password: %+v", r)
		}
	}
	if len(a.recs) != 4 || a.recs[2].Outcome != "refused" {
		t.Errorf("audit: %+v", a.recs)
	}
}

func TestLoginWrongAndRateLimited(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	c, a := newChecker(t, &now)
	for _, try := range []struct{ user, pw string }{{"alice", "wrong"}, {"nobody", "alice-pw"}, {"alice", ""}} {
		if err := c.Login(ctx, "m1", try.user, []byte(try.pw)); !errors.Is(err, ErrLoginFailed) || err.Error() != "wrong user name or password" {
			t.Errorf("login %s/%q: %v, want ErrLoginFailed", try.user, try.pw, err)
		}
	}
	// The fourth failure of alice starts the delay: even the right
	// password waits.
	c.Login(ctx, "m2", "alice", []byte("wrong"))
	c.Login(ctx, "m3", "alice", []byte("wrong"))
	var re *RetryError
	if err := c.Login(ctx, "m4", "alice", []byte("alice-pw")); !errors.As(err, &re) || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after 4 failures: %v, want ErrRateLimited", err)
	}
	now = now.Add(re.After)
	if err := c.Login(ctx, "m4", "alice", []byte("alice-pw")); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	// Per machine: guessing many users on one machine is slowed too.
	for i := 0; i < 6; i++ {
		c.Login(ctx, "m9", fmt.Sprintf("u%d", i), []byte("x"))
	}
	if err := c.Login(ctx, "m9", "alice", []byte("alice-pw")); !errors.Is(err, ErrRateLimited) {
		t.Errorf("machine after 6 failures: %v, want ErrRateLimited", err)
	}
	var reasons []string
	for _, r := range a.recs {
		reasons = append(reasons, r.Outcome+":"+r.Reason)
	}
	if got := strings.Join(reasons, ","); !strings.Contains(got, "refused:unknown user") || !strings.Contains(got, "refused:rate limited") {
		t.Errorf("audit reasons: %s", got)
	}
}

func TestLoginFailsClosedWithoutAudit(t *testing.T) {
	now := time.Unix(1000, 0)
	c, a := newChecker(t, &now)
	a.fail = true
	if err := c.Login(context.Background(), "m1", "alice", []byte("alice-pw")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("login without audit: %v", err)
	}
}

func TestLoginVerificationsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	c, _ := newChecker(t, &now)
	for range cap(c.verifying) {
		c.verifying <- struct{}{} // every slot taken
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Login(ctx, "m1", "alice", []byte("alice-pw")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("login with no free verification slot: %v, want it to wait for its context", err)
	}
	<-c.verifying
	if err := c.Login(context.Background(), "m1", "alice", []byte("alice-pw")); err != nil {
		t.Fatalf("login with a free slot: %v", err)
	}
}
