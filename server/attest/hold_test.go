package attest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/wire"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestHoldLeavesBootsAlone holds a machine's iSCSI root, as a backup
// --with-roots or a capture does, at each step of a real boot: during
// its attestation (held between hello and evidence), after its
// credential but before it logged in, and with a hold taken first. The
// hold is refused while the machine boots, naming why, and the boot
// never fails: its credential logs in to its root.
func TestHoldLeavesBootsAlone(t *testing.T) {
	ctx := context.Background()
	r := newRootEnv(t)
	clock := &testClock{t: time.Now()}
	var rs *roots.Service
	e := newEnv(t, func(c *attest.Config) {
		rs = roots.New(roots.Config{Providers: map[string]roots.Provider{roots.KindISCSI: r.p},
			BootGrace: time.Minute, Now: clock.now})
		c.Roots, c.Withdraw = rs, rs
	})
	rs.SetAttesting(e.srv)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-h")
	setRoot(t, e, m.id, wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "tiny"}})

	holdRefused := func(why string) {
		t.Helper()
		release, err := rs.Hold(ctx, m.id)
		if err == nil {
			release()
			t.Fatalf("Hold while the machine %s succeeded, want refused", why)
		}
		if !errors.Is(err, roots.ErrInUse) || !strings.Contains(err.Error(), why) {
			t.Fatalf("Hold = %v, want %v saying %q", err, roots.ErrInUse, why)
		}
	}
	loginWorks := func(res *agentattest.Result) {
		t.Helper()
		if got, err := rootCapacity(t, res.Payload.Root, res.Payload.Secrets); err != nil || got != r.image.Size {
			t.Fatalf("login with the boot's credential: capacity %d, %v; want %d", got, err, r.image.Size)
		}
	}

	// 1. Attesting: the exchange is held after its hello.
	finish := e.heldAttest(t, m)
	holdRefused("is attesting")
	res, err := finish()
	if err != nil {
		t.Fatalf("held attestation = %v, want a credential", err)
	}
	// 2. Credential released, not logged in yet (the server ends its
	// side of the exchange just after the agent has its credential).
	waitExchangeEnded(t, e, m.id)
	holdRefused("is not attached yet")
	loginWorks(res)
	// Logged in (and out, as a machine powered off): the hold takes it.
	release := holdEventually(t, rs, m.id)
	release()

	// 3. A boot that never logs in counts as booting for the grace only.
	m.reboot(t)
	if _, err := attestOnce(t, e.client(t, m.dev)); err != nil {
		t.Fatal(err)
	}
	waitExchangeEnded(t, e, m.id)
	holdRefused("is not attached yet")
	clock.add(time.Minute)
	release = holdEventually(t, rs, m.id)
	release()

	// 4. Held first: a boot meanwhile waits for the release, then gets
	// its root.
	release = holdEventually(t, rs, m.id)
	m.reboot(t)
	type outcome struct {
		res *agentattest.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := attestOnce(t, e.client(t, m.dev))
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		release()
		t.Fatalf("attestation while held ended (%v) before the release, want it waiting", o.err)
	case <-time.After(2 * time.Second):
	}
	release()
	o := <-done
	if o.err != nil {
		t.Fatalf("attestation after the release = %v, want a credential", o.err)
	}
	loginWorks(o.res)
}

// holdEventually holds id's root, retrying while the target still sees
// the session a login just closed.
func holdEventually(t *testing.T, rs *roots.Service, id string) func() {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var release func()
		if release, err = rs.Hold(context.Background(), id); err == nil {
			return release
		}
		if !strings.Contains(err.Error(), "session is logged in") {
			break
		}
	}
	t.Fatalf("Hold of a machine powered off = %v, want held", err)
	return nil
}

// waitExchangeEnded waits until the server has no exchange of id.
func waitExchangeEnded(t *testing.T, e *testEnv, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.srv.Attesting(id); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server's exchange did not end")
		}
	}
}
