package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/test/softtpm"
)

var defaultSpec = fakeboot.Spec{Firmware: "OVMF 2022.11", Kernel: []byte("vmlinuz 6.1"), Initrd: []byte("initramfs"), Cmdline: "console=ttyS0"}

func attestOnce(t *testing.T, c *agentattest.Client) (*agentattest.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.AttestOnce(ctx)
}

// enrollAndApprove boots m once (pending), then approves it as name.
func (e *testEnv) enrollAndApprove(t *testing.T, m *testMachine, name string) {
	t.Helper()
	_, err := attestOnce(t, e.client(t, m.dev))
	var p *agentattest.PendingError
	if !errors.As(err, &p) || p.MachineID != m.id {
		t.Fatalf("first attestation = %v, want pending for %s", err, m.id)
	}
	if _, err := e.mgr.Approve(context.Background(), m.id[:16], api.ApproveOptions{Name: name}); err != nil {
		t.Fatalf("Approve: %v", err)
	}
}

func TestUnknownPendingApproveSuccess(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	c := e.client(t, m.dev)

	_, err := attestOnce(t, c)
	var p *agentattest.PendingError
	if !errors.As(err, &p) {
		t.Fatalf("attest unknown machine = %v, want PendingError", err)
	}
	if p.MachineID != m.id || p.NeedsReapproval {
		t.Fatalf("pending = %+v, want machine %s awaiting first approval", p, m.id)
	}
	rec, err := e.db.Machine(context.Background(), m.id)
	if err != nil {
		t.Fatalf("machine not recorded: %v", err)
	}
	if rec.State != store.StatePending || rec.Reported == nil || len(rec.Reported.Events) == 0 {
		t.Fatalf("record = state %q reported %v, want pending with a verified boot state", rec.State, rec.Reported != nil)
	}
	if a := e.lastAudit(t, m.id); a.Outcome != "pending" {
		t.Fatalf("audit outcome = %q, want pending", a.Outcome)
	}

	if err := e.mgr.SetSecret(context.Background(), m.id, "iscsi-chap", []byte("s3cret-value")); err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	if _, err := e.mgr.Approve(context.Background(), m.id[:12], api.ApproveOptions{Name: "node-1"}); err != nil {
		t.Fatalf("Approve: %v", err)
	}
	res, err := attestOnce(t, c)
	if err != nil {
		t.Fatalf("attest approved machine: %v", err)
	}
	if res.Payload.MachineName != "node-1" || res.Payload.MachineID != m.id {
		t.Errorf("payload = %q/%q, want node-1/%s", res.Payload.MachineName, res.Payload.MachineID, m.id)
	}
	if got := string(res.Payload.Secrets["iscsi-chap"]); got != "s3cret-value" {
		t.Errorf("payload secret = %q, want the operator's value", got)
	}
	if a := e.lastAudit(t, m.id); a.Outcome != "allowed" {
		t.Errorf("audit outcome = %q, want allowed", a.Outcome)
	}
	rec, _ = e.db.Machine(context.Background(), m.id)
	if rec.BootCount != 1 {
		t.Errorf("boot count = %d, want 1", rec.BootCount)
	}

	// PCR 15 is now extended: nothing else in this boot gets a credential.
	_, err = attestOnce(t, c)
	e.wantRefused(t, err, m.id, "event-log")

	raw, _ := readFile(e.auditPath)
	if bytes.Contains(raw, []byte("s3cret-value")) {
		t.Error("secret value appears in the audit log")
	}
}

func TestRevokedIsRefused(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-r")
	if _, err := e.mgr.Revoke(context.Background(), "node-r", "stolen laptop"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	_, err := attestOnce(t, e.client(t, m.dev))
	var r *agentattest.RevokedError
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "stolen laptop") {
		t.Fatalf("attest revoked = %v, want RevokedError with the operator's reason", err)
	}
	if a := e.lastAudit(t, m.id); a.Outcome != "revoked" {
		t.Fatalf("audit outcome = %q, want revoked", a.Outcome)
	}
}

// replayDevice answers quotes with a quote recorded in another session.
type replayDevice struct {
	agentattest.Device
	record  bool
	quote   []byte
	sig     []byte
	mutateQ func([]byte) []byte // changes the qualifying data before quoting
}

func (d *replayDevice) Quote(ctx context.Context, q []byte, pcrs []int) ([]byte, []byte, error) {
	if d.mutateQ != nil {
		q = d.mutateQ(q)
	}
	if d.quote != nil && !d.record {
		return d.quote, d.sig, nil
	}
	quote, sig, err := d.Device.Quote(ctx, q, pcrs)
	if d.record {
		d.quote, d.sig = quote, sig
	}
	return quote, sig, err
}

func TestQuoteFromAnotherSessionIsRefused(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-q")
	// Session 1 records a genuine quote (and leaves PCR 15 alone); session 2
	// presents it again over a new TLS session with a new nonce.
	dev := &replayDevice{Device: m.dev, record: true}
	c := e.client(t, dev, func(c *agentattest.Config) { c.NoUnseal = true })
	if _, err := attestOnce(t, c); err != nil {
		t.Fatalf("session 1: %v", err)
	}
	dev.record = false
	_, err := attestOnce(t, c)
	e.wantRefused(t, err, m.id, "quote-extra-data")
}

func TestWrongNonceIsRefused(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	dev := &replayDevice{Device: m.dev, mutateQ: func(q []byte) []byte {
		q = bytes.Clone(q)
		q[0] ^= 1
		return q
	}}
	_, err := attestOnce(t, e.client(t, dev))
	e.wantRefused(t, err, m.id, "quote-extra-data")
	if _, err := e.db.Machine(context.Background(), m.id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused unknown machine was recorded (err %v)", err)
	}
}

// foreignAKDevice presents an AK that is not in the TPM holding the EK.
type foreignAKDevice struct {
	agentattest.Device
	ak []byte
}

func (d *foreignAKDevice) Identity(ctx context.Context) (*agentattest.Identity, error) {
	id, err := d.Device.Identity(ctx)
	if err != nil {
		return nil, err
	}
	c := *id
	c.AKPublic = d.ak
	return &c, nil
}

func (d *foreignAKDevice) ActivateCredential(ctx context.Context, blob, secret []byte) ([]byte, error) {
	if _, err := d.Device.ActivateCredential(ctx, blob, secret); err == nil {
		return nil, errors.New("TPM activated a credential for a foreign AK")
	}
	// The TPM refused; the attacker guesses the secret.
	guess := make([]byte, 32)
	rand.Read(guess)
	return guess, nil
}

func TestAKNotBoundToEKIsRefused(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	soft, err := softtpm.New(rand.Reader)
	if err != nil {
		t.Fatalf("softtpm.New: %v", err)
	}
	_, err = attestOnce(t, e.client(t, &foreignAKDevice{Device: m.dev, ak: soft.AKPublic()}))
	e.wantRefused(t, err, m.id, "activation")
}

func TestTamperedEventLogIsRefused(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *testMachine) []byte
	}{
		{"digest_replaced", func(m *testMachine) []byte {
			evs := slices.Clone(m.evs)
			last := len(evs) - 1
			evs[last].Digest = bytes.Repeat([]byte{0x42}, 32) // e.g. hide what really ran
			return fakeboot.Encode(evs)
		}},
		{"event_dropped", func(m *testMachine) []byte {
			evs := slices.Clone(m.evs)
			return fakeboot.Encode(append(evs[:3], evs[4:]...))
		}},
		{"truncated", func(m *testMachine) []byte { return m.boot.Log[:len(m.boot.Log)*2/3] }},
		{"header_only", func(m *testMachine) []byte { return fakeboot.Encode(nil) }},
		{"empty", func(*testMachine) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := newMachine(t, defaultSpec)
			m.log = tt.mutate(m)
			_, err := attestOnce(t, e.client(t, m.dev))
			e.wantRefused(t, err, m.id, "event-log")
		})
	}
}

func TestBootStateChangeNeedsReapproval(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-c")

	// Keep a credential sealed to the approved state, unopened.
	res, err := attestOnce(t, e.client(t, m.dev, func(c *agentattest.Config) { c.NoUnseal = true }))
	if err != nil {
		t.Fatalf("attest approved: %v", err)
	}

	// Something new runs in the boot path: one more PCR 4 event.
	extra := fakeboot.Event{PCR: 4, Type: 0x80000003, Data: []byte("evil.efi")}
	m.extend(t, extra)

	_, err = attestOnce(t, e.client(t, m.dev))
	var p *agentattest.PendingError
	if !errors.As(err, &p) || !p.NeedsReapproval {
		t.Fatalf("attest after change = %v, want needs re-approval", err)
	}
	if !strings.Contains(p.Diff, "PCR 4") {
		t.Errorf("diff does not name PCR 4:\n%s", p.Diff)
	}
	rec, _ := e.db.Machine(context.Background(), m.id)
	if rec.State != store.StateNeedsReapproval {
		t.Errorf("state = %q, want needs-reapproval", rec.State)
	}

	// The TPM itself refuses the credential sealed to the old state.
	if _, err := m.dev.Unseal(context.Background(), res.Credential); err == nil {
		t.Fatal("TPM unsealed a credential after a PCR changed")
	}

	// The operator accepts the change; the next boot succeeds.
	if _, err := e.mgr.Approve(context.Background(), "node-c", api.ApproveOptions{}); err != nil {
		t.Fatalf("re-approve: %v", err)
	}
	if _, err := attestOnce(t, e.client(t, m.dev)); err != nil {
		t.Fatalf("attest after re-approval: %v", err)
	}
}

func TestServerFromAnotherCAIsRefused(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	m := newMachine(t, defaultSpec)
	c := e.client(t, m.dev, func(c *agentattest.Config) { c.Roots = other.roots })
	_, err := attestOnce(t, c)
	var ua x509.UnknownAuthorityError
	if err == nil || !(errors.As(err, &ua) || strings.Contains(err.Error(), "certificate signed by unknown authority")) {
		t.Fatalf("attest to a server of another CA = %v, want an unknown-authority TLS error", err)
	}
	if _, err := e.db.Machine(context.Background(), m.id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("machine reached the server despite the TLS failure")
	}
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

// A TPM whose clock state went back (a restored snapshot or a clone of a
// virtual TPM) reports a reset count below one the server already saw.
func TestResetCountGoingBackIsRefused(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-rc")
	nounseal := func(c *agentattest.Config) { c.NoUnseal = true }
	if _, err := attestOnce(t, e.client(t, m.dev, nounseal)); err != nil {
		t.Fatalf("attest: %v", err)
	}
	rec, err := e.db.UpdateMachine(context.Background(), m.id, func(r *store.Machine) error {
		r.ResetCount += 3 // the server has seen three later boots of this TPM
		return nil
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	_, err = attestOnce(t, e.client(t, m.dev, nounseal))
	e.wantRefused(t, err, m.id, "reset-count")
	if after, _ := e.db.Machine(context.Background(), m.id); after.BootCount != rec.BootCount {
		t.Errorf("boot count moved on a refused attestation")
	}
}
