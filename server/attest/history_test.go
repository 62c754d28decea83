package attest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/events"
	"github.com/sealroot/sealroot/server/history"
	"github.com/sealroot/sealroot/test/fakeboot"
)

// Every attempt lands in the machine's boot history with the check that
// decided it, refusals included; unknown identities are counted, and the
// audit log names the server as the actor of its own decisions.
func TestBootHistory(t *testing.T) {
	var rec *history.Recorder
	e := newEnv(t, func(c *attest.Config) {
		rec = history.New(c.Store, "server-1", nil)
		c.History = rec
	})
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- rec.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-ran })
	ctx := context.Background()
	var bus events.Bus // what `sealroot events --follow` reads
	e.audit.OnRecord(bus.Publish)
	sub := bus.Subscribe()
	type step struct{ outcome, check string }
	want := map[string][]step{}
	// One simulator at a time: each machine boots in its own subtest.
	t.Run("lifecycle", func(t *testing.T) {
		m := newMachine(t, defaultSpec)
		e.enrollAndApprove(t, m, "node-h") // pending
		if _, err := attestOnce(t, e.client(t, m.dev)); err != nil {
			t.Fatalf("attest approved: %v", err) // allowed
		}
		_, err := attestOnce(t, e.client(t, m.dev)) // PCR 15 extended: refused
		e.wantRefused(t, err, m.id, "event-log")
		if _, err := e.mgr.Revoke(ctx, "node-h", "lost"); err != nil {
			t.Fatal(err)
		}
		_, err = attestOnce(t, e.client(t, m.dev)) // revoked
		var r *agentattest.RevokedError
		if !errors.As(err, &r) {
			t.Fatalf("attest revoked = %v", err)
		}

		want[m.id] = []step{{"pending", "enrollment"}, {"allowed", "policy"}, {"refused", "event-log"}, {"revoked", "enrollment"}}
	})
	t.Run("reapproval", func(t *testing.T) {
		// A second machine whose boot changes after approval.
		m2 := newMachine(t, defaultSpec)
		e.enrollAndApprove(t, m2, "node-c")
		m2.extend(t, fakeboot.Event{PCR: 4, Type: 0x80000003, Data: []byte("evil.efi")})
		_, err := attestOnce(t, e.client(t, m2.dev))
		var p *agentattest.PendingError
		if !errors.As(err, &p) || !p.NeedsReapproval {
			t.Fatalf("attest after change = %v, want needs re-approval", err)
		}

		want[m2.id] = []step{{"pending", "enrollment"}, {"needs-reapproval", "policy"}}
	})
	// An identity nobody enrolled, with a forged event log.
	var unknownID string
	t.Run("unknown", func(t *testing.T) {
		m3 := newMachine(t, defaultSpec)
		m3.log = fakeboot.Encode(nil)
		_, err := attestOnce(t, e.client(t, m3.dev))
		e.wantRefused(t, err, m3.id, "event-log")
		unknownID = m3.id
	})
	if t.Failed() {
		return
	}
	rec.Flush()
	for id, steps := range want {
		got, err := e.db.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.History) != len(steps) {
			t.Fatalf("machine %.8s: history has %d attempts, want %d: %+v", id, len(got.History), len(steps), got.History)
		}
		for i, s := range steps {
			a := got.History[i]
			if a.Outcome != s.outcome || a.Check != s.check {
				t.Errorf("machine %.8s attempt %d = %s/%s, want %s/%s", id, i, a.Outcome, a.Check, s.outcome, s.check)
			}
			if a.Server != "server-1" || a.Remote == "" || a.Time.IsZero() || a.Reason == "" || a.Duration <= 0 {
				t.Errorf("machine %.8s attempt %d lacks a field: %+v", id, i, a)
			}
		}
	}
	if _, err := e.db.Machine(ctx, unknownID); err == nil {
		t.Error("an unknown identity refused got a machine record")
	}
	if n := rec.Unknown()["event-log"]; n != 1 {
		t.Errorf("unknown identities refused by event-log = %d, want 1", n)
	}

	bus.Close()
	var streamed []string
	for ev := range sub.C() {
		if ev.Action == "attest" {
			streamed = append(streamed, ev.Outcome+"/"+ev.Check)
		}
	}
	if got := strings.Join(streamed, " "); !strings.Contains(got, "allowed/policy") || !strings.Contains(got, "refused/event-log") {
		t.Errorf("event stream carried %q, want the attestations' outcomes as they happened", got)
	}

	entries, err := audit.ReadAll(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range entries {
		if a.Action == "attest" && (a.Actor != "server" || a.Check == "" || a.Reason == "" || a.MachineID == "") {
			t.Errorf("attest record without actor server, machine, check and reason: %+v", a)
		}
		if a.Action == "secret-load" && a.Actor != "server" {
			t.Errorf("secret load recorded as the operator's: %+v", a)
		}
		if a.Action == "secret-release" || a.Action == "files-release" {
			t.Errorf("a release recorded apart from the attestation: %+v", a)
		}
	}
}

// A release writes its allowed attempt into the boot history in its own
// transaction: the attempt is there once the attestation returns, with
// no Flush and no writer running (the pending attempt before it is still
// queued), and the writer later puts that pending attempt before it, in
// the order decided. The observers hear the allowed attempt once, marked
// as in the history.
func TestAllowedAttemptWrittenByRelease(t *testing.T) {
	var rec *history.Recorder
	var seen outcomes
	e := newEnv(t, func(c *attest.Config) {
		rec = history.New(c.Store, "server-1", nil)
		c.History = rec
		c.Observer = &seen
	})
	ctx := context.Background()
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-w") // pending: queued, not written
	if _, err := attestOnce(t, e.client(t, m.dev)); err != nil {
		t.Fatalf("attest approved: %v", err)
	}
	got, err := e.db.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.History) != 1 || got.History[0].Outcome != "allowed" || got.History[0].Check != "policy" ||
		got.History[0].Server != "server-1" || got.History[0].Duration <= 0 || !got.History[0].Time.Equal(got.LastSeen) {
		t.Fatalf("history once the release returned = %+v, want the allowed attempt alone (at LastSeen %v)", got.History, got.LastSeen)
	}

	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- rec.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-ran })
	rec.Flush()
	if got, err = e.db.Machine(ctx, m.id); err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, a := range got.History {
		steps = append(steps, a.Outcome)
	}
	if s := strings.Join(steps, " "); s != "pending allowed" {
		t.Errorf("history after Flush = %q, want %q", s, "pending allowed")
	}
	if s := seen.String(); s != "pending allowed(in history)" {
		t.Errorf("observer heard %q, want %q", s, "pending allowed(in history)")
	}
}

// outcomes is an Observer keeping what it hears.
type outcomes struct {
	mu sync.Mutex
	as []attest.Attempt
}

func (o *outcomes) Observe(a attest.Attempt) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.as = append(o.as, a)
}

func (o *outcomes) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var s []string
	for _, a := range o.as {
		if a.InHistory {
			s = append(s, a.Outcome+"(in history)")
		} else {
			s = append(s, a.Outcome)
		}
	}
	return strings.Join(s, " ")
}
