package attest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/wire"
)

// heldDevice holds its attestation between the server's challenge and the
// agent's evidence: the exchange has said hello and waits.
type heldDevice struct {
	agentattest.Device
	reached chan struct{} // closed when the challenge arrived
	proceed chan struct{} // close to let the agent answer
}

func (d *heldDevice) ActivateCredential(ctx context.Context, blob, secret []byte) ([]byte, error) {
	close(d.reached)
	select {
	case <-d.proceed:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return d.Device.ActivateCredential(ctx, blob, secret)
}

// heldAttest starts one attestation of m and returns once the server has
// answered its hello; release lets it go on and returns its outcome.
func (e *testEnv) heldAttest(t *testing.T, m *testMachine, mod ...func(*agentattest.Config)) (release func() (*agentattest.Result, error)) {
	t.Helper()
	d := &heldDevice{Device: m.dev, reached: make(chan struct{}), proceed: make(chan struct{})}
	c := e.client(t, d, mod...)
	type outcome struct {
		res *agentattest.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := c.AttestOnce(ctx)
		done <- outcome{res, err}
	}()
	var once sync.Once
	let := func() { once.Do(func() { close(d.proceed) }) }
	t.Cleanup(let) // a failed test does not leave the agent waiting
	select {
	case <-d.reached:
	case o := <-done:
		t.Fatalf("attestation ended before its evidence: %v", o.err)
	}
	return func() (*agentattest.Result, error) {
		let()
		o := <-done
		return o.res, o.err
	}
}

// waitAudit waits until the newest audit entry of machine id is an
// attestation refused by check: the server ended the exchange itself,
// before the agent sent its evidence.
func (e *testEnv) waitAudit(t *testing.T, id, check string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, err := audit.ReadAll(e.auditPath)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(entries) - 1; i >= 0; i-- {
			if a := entries[i]; a.MachineID == id && a.Action == "attest" {
				if a.Outcome == "refused" && a.Check == check {
					return
				}
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the server did not end the held exchange with check %q", check)
}

// TestOperatorActsDuringExchange holds an attestation after its hello,
// lets an operator act, then lets the agent send its evidence: every
// release and state change is decided against the record as it is then.
func TestOperatorActsDuringExchange(t *testing.T) {
	ctx := context.Background()
	changedBoot := fakeboot.Event{PCR: 4, Type: 0x80000003, Data: []byte("evil.efi")}
	newRoot := wire.RootPlan{Kind: wire.RootNFS, Params: map[string]string{"image": "lab"}}
	tests := []struct {
		name string
		// setup brings the machine to its state at hello.
		setup func(t *testing.T, e *testEnv, m *testMachine)
		// act is the operator's action while the exchange is held.
		act func(t *testing.T, e *testEnv, m *testMachine)
		// ended is the check with which the server ends the exchange at
		// once, before the evidence; "" when it waits for it.
		ended string
		// check is the refusal the agent gets; "" for a credential.
		check string
		// after checks the record (nil: forgotten) and the next attempt.
		after func(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine)
	}{
		{
			name:  "approved_then_revoked",
			setup: approved,
			act:   revoke,
			ended: "revoked", check: "revoked",
			after: stillRevoked,
		},
		{
			// Defect 2: the evidence shows a changed boot state; the
			// stale exchange must not move the machine to needs-reapproval.
			name: "approved_boot_changed_then_revoked",
			setup: func(t *testing.T, e *testEnv, m *testMachine) {
				approved(t, e, m)
				m.extend(t, changedBoot)
			},
			act:   revoke,
			ended: "revoked", check: "revoked",
			after: stillRevoked,
		},
		{
			name:  "pending_then_revoked",
			setup: pending,
			act:   revoke,
			ended: "revoked", check: "revoked",
			after: stillRevoked,
		},
		{
			name:  "approved_then_forgotten",
			setup: approved,
			act:   forget,
			ended: "forgotten", check: "forgotten",
			after: stillForgotten,
		},
		{
			name:  "pending_then_forgotten",
			setup: pending,
			act:   forget,
			ended: "forgotten", check: "forgotten",
			after: stillForgotten,
		},
		{
			// Forgotten, then enrolled again by another boot: the held
			// exchange knows the old record only and changes nothing.
			name:  "approved_then_forgotten_and_reenrolled",
			setup: approved,
			act: func(t *testing.T, e *testEnv, m *testMachine) {
				forget(t, e, m)
				if err := e.db.CreateMachine(context.Background(), &store.Machine{ID: m.id, Name: "again", State: store.StatePending, EKPublic: []byte{1}}); err != nil {
					t.Fatal(err)
				}
			},
			ended: "forgotten", check: "forgotten",
			after: func(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
				if rec == nil || rec.State != store.StatePending || rec.Name != "again" || rec.Reported != nil || rec.BootCount != 0 {
					t.Errorf("re-enrolled record = %+v, want it untouched (pending, nothing reported)", rec)
				}
			},
		},
		{
			name:  "needs_reapproval_then_revoked",
			setup: needsReapproval,
			act:   revoke,
			ended: "revoked", check: "revoked",
			after: stillRevoked,
		},
		{
			name:  "needs_reapproval_then_forgotten",
			setup: needsReapproval,
			act:   forget,
			ended: "forgotten", check: "forgotten",
			after: stillForgotten,
		},
		{
			// Unknown at hello; meanwhile another boot of the same TPM
			// enrols it and the operator approves it. The held exchange
			// must not treat the approved record as pending.
			name:  "unknown_then_enrolled_and_approved",
			setup: func(*testing.T, *testEnv, *testMachine) {},
			act: func(t *testing.T, e *testEnv, m *testMachine) {
				pending(t, e, m)
				if _, err := e.mgr.Approve(context.Background(), m.id, api.ApproveOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			check: "stale-record",
			after: func(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
				if rec.State != store.StateApproved || rec.Reported != nil {
					t.Errorf("record = %s, reported %v; want approved with nothing reported since", rec.State, rec.Reported != nil)
				}
			},
		},
		{
			name:  "pending_then_approved",
			setup: pending,
			act: func(t *testing.T, e *testEnv, m *testMachine) {
				if _, err := e.mgr.Approve(context.Background(), m.id, api.ApproveOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			check: "stale-record",
			after: func(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
				if rec.State != store.StateApproved || rec.Reported != nil {
					t.Errorf("record = %s, reported %v; want approved with nothing reported since", rec.State, rec.Reported != nil)
				}
				if _, err := attestOnce(t, e.client(t, m.dev)); err != nil {
					t.Errorf("next attestation after approval: %v", err)
				}
			},
		},
		{
			name:  "needs_reapproval_then_reapproved",
			setup: needsReapproval,
			act: func(t *testing.T, e *testEnv, m *testMachine) {
				if _, err := e.mgr.Approve(context.Background(), m.id, api.ApproveOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			check: "stale-record",
			after: func(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
				if rec.State != store.StateApproved {
					t.Errorf("state = %s, want approved", rec.State)
				}
				if _, err := attestOnce(t, e.client(t, m.dev)); err != nil {
					t.Errorf("next attestation after re-approval: %v", err)
				}
			},
		},
		{
			name:  "approved_then_secret_set",
			setup: approved,
			act: func(t *testing.T, e *testEnv, m *testMachine) {
				if err := e.mgr.SetSecret(context.Background(), m.id, "token", []byte("new-value")); err != nil {
					t.Fatal(err)
				}
			},
			check: "stale-record",
			after: func(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
				res, err := attestOnce(t, e.client(t, m.dev))
				if err != nil || string(res.Payload.Secrets["token"]) != "new-value" {
					t.Errorf("next attestation = %v; want the new secret", err)
				}
			},
		},
		{
			// The same store change sealroot's set-root makes.
			name:  "approved_then_set_root",
			setup: approved,
			act: func(t *testing.T, e *testEnv, m *testMachine) {
				if _, err := e.db.UpdateMachine(context.Background(), m.id, func(mc *store.Machine) error {
					mc.Root = newRoot
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			},
			check: "stale-record",
			after: func(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
				res, err := attestOnce(t, e.client(t, m.dev))
				if err != nil || res.Payload.Root.Kind != wire.RootNFS {
					t.Errorf("next attestation = %v; want the new root", err)
				}
			},
		},
		{
			// Control: with no change the held exchange gets its credential.
			name:  "approved_then_nothing",
			setup: approved,
			act:   func(*testing.T, *testEnv, *testMachine) {},
			after: func(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
				if rec.State != store.StateApproved || rec.BootCount != 1 {
					t.Errorf("record = %s, boot count %d; want approved, 1", rec.State, rec.BootCount)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := newMachine(t, defaultSpec)
			tt.setup(t, e, m)
			before, _ := e.db.Machine(ctx, m.id)
			release := e.heldAttest(t, m)
			tt.act(t, e, m)
			if tt.ended != "" {
				e.waitAudit(t, m.id, tt.ended)
			}
			res, err := release()
			if tt.check == "" {
				if err != nil || res.Payload.MachineID != m.id {
					t.Fatalf("held attestation = %v, want a credential", err)
				}
			} else {
				var r *agentattest.RefusedError
				if !errors.As(err, &r) || r.Check != tt.check {
					t.Fatalf("held attestation = %v, want refused by check %q", err, tt.check)
				}
				if a := e.lastAudit(t, m.id); a.Outcome != "refused" || a.Check != tt.check {
					t.Errorf("audit = %+v, want refused by %q", a, tt.check)
				}
			}
			rec, err := e.db.Machine(ctx, m.id)
			if errors.Is(err, store.ErrNotFound) {
				rec = nil
			} else if err != nil {
				t.Fatal(err)
			}
			if tt.check != "" && rec != nil && before != nil && rec.BootCount != before.BootCount {
				t.Errorf("boot count %d -> %d on a refused attestation", before.BootCount, rec.BootCount)
			}
			tt.after(t, e, m, rec)
		})
	}
}

func approved(t *testing.T, e *testEnv, m *testMachine) { e.enrollAndApprove(t, m, "node") }

func pending(t *testing.T, e *testEnv, m *testMachine) {
	t.Helper()
	_, err := attestOnce(t, e.client(t, m.dev))
	var p *agentattest.PendingError
	if !errors.As(err, &p) {
		t.Fatalf("first attestation = %v, want pending", err)
	}
}

// needsReapproval approves m, then boots it in a changed state.
func needsReapproval(t *testing.T, e *testEnv, m *testMachine) {
	t.Helper()
	approved(t, e, m)
	m.extend(t, fakeboot.Event{PCR: 4, Type: 0x80000003, Data: []byte("evil.efi")})
	_, err := attestOnce(t, e.client(t, m.dev))
	var p *agentattest.PendingError
	if !errors.As(err, &p) || !p.NeedsReapproval {
		t.Fatalf("attest after change = %v, want needs re-approval", err)
	}
}

func revoke(t *testing.T, e *testEnv, m *testMachine) {
	t.Helper()
	if _, err := e.mgr.Revoke(context.Background(), m.id, "stolen laptop"); err != nil {
		t.Fatal(err)
	}
}

func forget(t *testing.T, e *testEnv, m *testMachine) {
	t.Helper()
	if err := e.mgr.Forget(context.Background(), m.id); err != nil {
		t.Fatal(err)
	}
}

func stillForgotten(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
	if rec != nil {
		t.Errorf("forgotten machine is back: %s", rec.State)
	}
}

func stillRevoked(t *testing.T, e *testEnv, m *testMachine, rec *store.Machine) {
	t.Helper()
	if rec == nil || rec.State != store.StateRevoked || !strings.Contains(rec.Reason, "stolen laptop") {
		t.Errorf("record = %+v, want still revoked", rec)
	}
}

// TestOneCredentialPerBoot: two attestations of the same boot, both held
// past the server's challenge, then let go one after the other: the
// first is released, the second refused (check boot-released), since a
// release of its boot committed after it read the record. The record
// counts one boot. (The agents do not unseal: an unseal extends PCR 15,
// and a quote made after it is refused by that check instead.)
func TestOneCredentialPerBoot(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-once")
	m.reboot(t)
	noUnseal := func(c *agentattest.Config) { c.NoUnseal = true }
	first, second := e.heldAttest(t, m, noUnseal), e.heldAttest(t, m, noUnseal)
	before, err := e.db.Machine(context.Background(), m.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first(); err != nil {
		t.Fatalf("first attestation of the boot: %v", err)
	}
	_, err = second()
	var r *agentattest.RefusedError
	if !errors.As(err, &r) || r.Check != "boot-released" {
		t.Fatalf("second attestation of the same boot = %v, want refused by boot-released", err)
	}
	after, err := e.db.Machine(context.Background(), m.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.BootCount != before.BootCount+1 {
		t.Errorf("boot count %d -> %d, want one release", before.BootCount, after.BootCount)
	}
}
