package machines

import (
	"context"
	"errors"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/store"
)

// attestations records which exchanges the manager ended.
type attestations struct{ ended []string }

func (a *attestations) EndRevoked(id, reason string) int {
	a.ended = append(a.ended, "revoked "+id[:1]+" "+reason)
	return 0
}

func (a *attestations) EndForgotten(id string) int {
	a.ended = append(a.ended, "forgotten "+id[:1])
	return 0
}

// Without an audit log that takes records, no change is made and no
// secret is handed out: every operation fails with api.ErrUnavailable
// (wrapping audit.ErrNotWritten) and the store keeps its version.
func TestNoChangeWithoutAuditRecord(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.add(t, idA, "alpha", store.StatePending, true)
	e.add(t, idB, "beta", store.StateApproved, true)
	if err := e.mgr.SetSecret(ctx, "beta", "token", []byte("v")); err != nil {
		t.Fatal(err)
	}
	ended := &attestations{}
	e.mgr.SetAttestations(ended)
	before := map[string]uint64{}
	for _, id := range []string{idA, idB} {
		m, _ := e.st.Machine(ctx, id)
		before[id] = m.Version
	}
	if err := e.log.Close(); err != nil { // a log that takes no more records
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"approve", func() error { _, err := e.mgr.Approve(ctx, "alpha", api.ApproveOptions{}); return err }},
		{"revoke", func() error { _, err := e.mgr.Revoke(ctx, "beta", "stolen"); return err }},
		{"forget", func() error { return e.mgr.Forget(ctx, "beta") }},
		{"forget_machine", func() error { _, err := e.mgr.ForgetMachine(ctx, "beta", false); return err }},
		{"dhcp_reserve", func() error { _, err := e.mgr.Reserve(ctx, "52:54:00:00:00:01", "192.0.2.9"); return err }},
		{"secret_set", func() error { return e.mgr.SetSecret(ctx, "beta", "other", []byte("v")) }},
		{"secret_delete", func() error { return e.mgr.DeleteSecret(ctx, "beta", "token") }},
		{"secret_list", func() error { _, err := e.mgr.SecretNames(ctx, "beta"); return err }},
		{"secret_release", func() error {
			s, err := e.mgr.PlainSecrets(ctx, idB)
			if s != nil {
				t.Errorf("PlainSecrets handed out %d secrets", len(s))
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, api.ErrUnavailable) || !errors.Is(err, audit.ErrNotWritten) {
				t.Fatalf("err = %v, want api.ErrUnavailable wrapping audit.ErrNotWritten", err)
			}
		})
	}
	for id, v := range before {
		m, err := e.st.Machine(ctx, id)
		if err != nil || m.Version != v {
			t.Errorf("machine %s: %v, version %d -> %d: changed without an audit record", id[:8], err, v, m.Version)
		}
	}
	if rs, _ := e.st.DHCPReservations(ctx); len(rs) != 0 {
		t.Errorf("reservations = %+v, want none: reserved without an audit record", rs)
	}
	if names, _ := e.st.Secrets(ctx, idB); len(names) != 1 {
		t.Errorf("secrets = %d, want the one set before", len(names))
	}
	if len(ended.ended) != 0 {
		t.Errorf("exchanges ended for changes never made: %v", ended.ended)
	}
}

// Revoke and Forget end the machine's attestations in progress, after the
// change is stored.
func TestRevokeAndForgetEndAttestations(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.add(t, idA, "alpha", store.StateApproved, true)
	e.add(t, idC, "gamma", store.StatePending, true)
	ended := &attestations{}
	e.mgr.SetAttestations(ended)
	if _, err := e.mgr.Revoke(ctx, "alpha", "stolen"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.Approve(ctx, "gamma", api.ApproveOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.Forget(ctx, "gamma"); err != nil {
		t.Fatal(err)
	}
	want := []string{"revoked a stolen", "forgotten c"}
	if len(ended.ended) != 2 || ended.ended[0] != want[0] || ended.ended[1] != want[1] {
		t.Errorf("ended = %q, want %q", ended.ended, want)
	}
}
