package attest_test

import (
	"context"
	"errors"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/test/diskfull"
)

// With the state directory's filesystem full no credential leaves: the
// audit record of the release cannot be written, so the agent is refused
// (check "audit", which it retries) and the record is not touched. Once
// there is space again the machine boots.
func TestFullDiskReleasesNothing(t *testing.T) {
	e := newEnvIn(t, diskfull.Mount(t, 2<<20))
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-full")
	if err := e.mgr.SetSecret(context.Background(), m.id, "token", []byte("value")); err != nil {
		t.Fatal(err)
	}
	before, err := e.db.Machine(context.Background(), m.id)
	if err != nil {
		t.Fatal(err)
	}
	free := diskfull.Fill(t, e.dir)
	fillAudit(t, e.audit)

	_, err = attestOnce(t, e.client(t, m.dev))
	var r *agentattest.RefusedError
	if !errors.As(err, &r) || r.Check != "audit" {
		t.Fatalf("attest on a full disk = %v, want refused by check \"audit\"", err)
	}
	after, err := e.db.Machine(context.Background(), m.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.BootCount != before.BootCount || after.State != before.State {
		t.Errorf("record moved on a refused release: boot count %d -> %d, state %s -> %s",
			before.BootCount, after.BootCount, before.State, after.State)
	}

	free()
	res, err := attestOnce(t, e.client(t, m.dev))
	if err != nil || string(res.Payload.Secrets["token"]) != "value" {
		t.Fatalf("attest once there is space = %v, want the credential", err)
	}
	if a := e.lastAudit(t, m.id); a.Outcome != "allowed" {
		t.Errorf("last audit entry = %+v, want allowed", a)
	}
}

// fillAudit takes what is left in the audit log's last page: after it,
// no record fits.
func fillAudit(t *testing.T, l *audit.Log) {
	t.Helper()
	for range 1000 {
		if err := l.Record(audit.Entry{}); err != nil {
			if !errors.Is(err, audit.ErrNotWritten) {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("the audit log never filled its filesystem")
}
