package attest_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// heldRoots holds one release inside the server, after its evidence was
// verified and its record checked, while the root is prepared: the last
// step before the release is committed. It serves the stored plan and
// counts withdrawals.
type heldRoots struct {
	armed   atomic.Bool
	reached chan struct{}
	proceed chan struct{}

	mu       sync.Mutex
	released int
}

func newHeldRoots() *heldRoots {
	return &heldRoots{reached: make(chan struct{}), proceed: make(chan struct{})}
}

func (h *heldRoots) Prepare(ctx context.Context, req roots.Request) (wire.RootPlan, map[string][]byte, error) {
	if h.armed.CompareAndSwap(true, false) {
		close(h.reached)
		select {
		case <-h.proceed:
		case <-ctx.Done():
			return wire.RootPlan{}, nil, ctx.Err()
		}
	}
	return req.Plan, nil, nil
}

// Withdraw counts a withdrawal, as roots.Service releases the root.
func (h *heldRoots) Withdraw(context.Context, string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.released++
	return nil
}

func (h *heldRoots) withdrawals() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.released
}

var (
	_ attest.Roots     = (*heldRoots)(nil)
	_ roots.Withdrawer = (*heldRoots)(nil)
)

// TestOperatorActsDuringRelease lets an operator act while the release is
// being prepared: after every earlier check passed, before it commits. The
// release's own transaction refuses what changed, nothing is stored, and
// the root it prepared is withdrawn.
func TestOperatorActsDuringRelease(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		act   func(t *testing.T, e *testEnv, m *testMachine)
		ended bool   // revoke and forget end the exchange at once
		check string // "" for a credential
	}{
		{"secret_set", func(t *testing.T, e *testEnv, m *testMachine) {
			if err := e.mgr.SetSecret(ctx, m.id, "token", []byte("new-value")); err != nil {
				t.Fatal(err)
			}
		}, false, "stale-record"},
		{"set_root", func(t *testing.T, e *testEnv, m *testMachine) {
			setRoot(t, e, m.id, wire.RootPlan{Kind: wire.RootNFS, Params: map[string]string{"image": "lab"}})
		}, false, "stale-record"},
		{"revoke", revoke, true, "revoked"},
		{"forget", forget, true, "forgotten"},
		{"nothing", func(*testing.T, *testEnv, *testMachine) {}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots := newHeldRoots()
			// As sealroot serve wires it: revoke and forget withdraw the root.
			e := newEnv(t, func(c *attest.Config) { c.Roots, c.Withdraw = roots, roots })
			m := newMachine(t, defaultSpec)
			e.enrollAndApprove(t, m, "node")
			before, _ := e.db.Machine(ctx, m.id)
			roots.armed.Store(true)
			done := make(chan error, 1)
			go func() {
				_, err := attestOnce(t, e.client(t, m.dev))
				done <- err
			}()
			var once sync.Once
			let := func() { once.Do(func() { close(roots.proceed) }) }
			t.Cleanup(let)
			select {
			case <-roots.reached:
			case err := <-done:
				t.Fatalf("attestation ended before its release: %v", err)
			}
			withdrawn := roots.withdrawals()
			tt.act(t, e, m)
			if tt.ended {
				e.waitAudit(t, m.id, tt.check)
			}
			let()
			err := <-done
			if tt.check == "" {
				if err != nil {
					t.Fatalf("attest = %v, want a credential", err)
				}
				return
			}
			var r *agentattest.RefusedError
			if !errors.As(err, &r) || r.Check != tt.check {
				t.Fatalf("attest = %v, want refused by check %q", err, tt.check)
			}
			if roots.withdrawals() == withdrawn {
				t.Error("the root prepared for a refused release was not withdrawn")
			}
			after, err := e.db.Machine(ctx, m.id)
			if errors.Is(err, store.ErrNotFound) {
				return // forgotten
			}
			if err != nil {
				t.Fatal(err)
			}
			if after.BootCount != before.BootCount {
				t.Errorf("boot count %d -> %d on a refused release", before.BootCount, after.BootCount)
			}
		})
	}
}
