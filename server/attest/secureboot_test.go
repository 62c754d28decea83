package attest_test

import (
	"errors"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
)

// TestRequireSecureBoot: with RequireSecureBoot, a machine whose quoted
// PCR 7 and event log show Secure Boot off is refused by check
// "secure-boot"; one that booted with Secure Boot on gets through.
func TestRequireSecureBoot(t *testing.T) {
	require := func(c *attest.Config) { c.RequireSecureBoot = true }

	t.Run("off_refused", func(t *testing.T) {
		e := newEnv(t, require)
		m := newMachine(t, defaultSpec) // SecureBoot = 0
		_, err := attestOnce(t, e.client(t, m.dev))
		e.wantRefused(t, err, m.id, "secure-boot")
		e.wantAuditReason(t, m.id, "Secure Boot is off")
		e.wantNotRecorded(t, m.id)
	})

	t.Run("on_pending", func(t *testing.T) {
		e := newEnv(t, require)
		spec := defaultSpec
		spec.SecureBoot = true
		spec.Authority = make([]byte, 16+32) // a db hash entry verified the image
		m := newMachine(t, spec)
		_, err := attestOnce(t, e.client(t, m.dev))
		var p *agentattest.PendingError
		if !errors.As(err, &p) || p.MachineID != m.id {
			t.Fatalf("attest = %v, want pending for %s", err, m.id)
		}
	})

	t.Run("off_allowed_without_requirement", func(t *testing.T) {
		e := newEnv(t)
		m := newMachine(t, defaultSpec)
		_, err := attestOnce(t, e.client(t, m.dev))
		var p *agentattest.PendingError
		if !errors.As(err, &p) {
			t.Fatalf("attest = %v, want pending", err)
		}
	})
}
