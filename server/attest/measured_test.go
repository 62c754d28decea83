package attest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	agenttpm "github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/policy"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/test/tpmtest"
	"github.com/sealroot/sealroot/wire"
)

// newUnmeasuredMachine boots spec the way legacy BIOS or Debian's iPXE
// loading a kernel and initrd does: no systemd-stub events in PCR 11, no
// PCR 12, and no initrd event in PCR 9. The initramfs is not measured at
// all, so whatever initramfs runs, the PCRs are the same.
func newUnmeasuredMachine(t *testing.T, spec fakeboot.Spec) *testMachine {
	t.Helper()
	boot, err := fakeboot.Build(spec)
	if err != nil {
		t.Fatalf("fakeboot.Build: %v", err)
	}
	initrd := fakeboot.Event{PCR: 9, Type: fakeboot.EvEventTag}
	evs := slices.DeleteFunc(slices.Clone(boot.Events), func(e fakeboot.Event) bool {
		return e.PCR == 11 || e.PCR == 12 || (e.PCR == initrd.PCR && e.Type == initrd.Type && strings.Contains(string(e.Data), "initrd"))
	})
	sim := tpmtest.Simulator(t)
	ext := tpmtest.ExtendDigest(sim)
	for _, e := range evs {
		if e.Type == fakeboot.EvNoAction {
			continue
		}
		if err := ext.ExtendPCR(e.PCR, e.Digest); err != nil {
			t.Fatalf("extend PCR %d: %v", e.PCR, err)
		}
	}
	tp := agenttpm.New(sim)
	keys, err := tp.LoadKeys(context.Background())
	if err != nil {
		t.Fatalf("LoadKeys: %v", err)
	}
	t.Cleanup(func() { keys.Close() })
	m := &testMachine{tpm: tp, keys: keys, boot: boot, log: fakeboot.Encode(evs), id: wire.MachineID(keys.EKPublic), ext: ext, evs: evs}
	m.dev = &agentattest.TPMDevice{TPM: tp, Keys: keys, ReadEventLog: func() ([]byte, error) { return m.log, nil }}
	return m
}

// TestUnmeasuredBootIsRefused is issue 11 defect 0 over real QUIC: an
// approved machine whose boot does not measure the initramfs gets no
// credential under the default policy (pinned) nor under predicted, even
// though its PCRs match what was approved; the agent gets check
// boot-measurement with a reason and the audit records it. Only an
// explicit identity-only approval admits it.
func TestUnmeasuredBootIsRefused(t *testing.T) {
	for _, pol := range []store.Policy{"", store.PolicyPinned, store.PolicyPredicted} {
		t.Run("policy_"+string(pol), func(t *testing.T) {
			e := newEnv(t)
			m := newUnmeasuredMachine(t, defaultSpec)
			_, err := attestOnce(t, e.client(t, m.dev))
			var p *agentattest.PendingError
			if !errors.As(err, &p) {
				t.Fatalf("first attestation = %v, want pending", err)
			}
			if _, err := e.mgr.Approve(context.Background(), m.id, api.ApproveOptions{Name: "legacy", Policy: api.Policy(pol)}); err != nil {
				t.Fatalf("Approve: %v", err)
			}
			res, err := attestOnce(t, e.client(t, m.dev))
			if res != nil {
				t.Fatalf("unmeasured boot got a credential")
			}
			e.wantRefused(t, err, m.id, policy.CheckBootMeasurement)
			var r *agentattest.RefusedError
			errors.As(err, &r)
			if !strings.Contains(r.Reason, "does not measure the initramfs") {
				t.Errorf("reason %q does not say what is unmeasured", r.Reason)
			}
			if a := e.lastAudit(t, m.id); !strings.Contains(a.Reason, "does not measure the initramfs") {
				t.Errorf("audit reason %q does not say what is unmeasured", a.Reason)
			}
			rec, err := e.db.Machine(context.Background(), m.id)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != store.StateApproved || rec.BootCount != 0 {
				t.Errorf("after the refusal: state %s, boot count %d; want approved, 0", rec.State, rec.BootCount)
			}
		})
	}
	t.Run("identity_only", func(t *testing.T) {
		e := newEnv(t)
		m := newUnmeasuredMachine(t, defaultSpec)
		if _, err := attestOnce(t, e.client(t, m.dev)); err == nil {
			t.Fatal("first attestation succeeded, want pending")
		}
		if _, err := e.mgr.Approve(context.Background(), m.id, api.ApproveOptions{Name: "legacy", Policy: api.PolicyIdentityOnly}); err != nil {
			t.Fatalf("Approve: %v", err)
		}
		if _, err := attestOnce(t, e.client(t, m.dev)); err != nil {
			t.Fatalf("identity-only: %v", err)
		}
	})
}
