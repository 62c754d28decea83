package machines

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// Machine IDs sharing an 8-digit prefix, and one apart.
var (
	idA = "aaaaaaaa" + strings.Repeat("1", 56)
	idB = "aaaaaaaa" + strings.Repeat("2", 56)
	idC = "cccccccc" + strings.Repeat("3", 56)
)

type env struct {
	mgr       *Manager
	st        *store.DB
	log       *audit.Log
	dbPath    string
	auditPath string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dbPath: filepath.Join(dir, "state.db"), auditPath: filepath.Join(dir, "audit.log")}
	var err error
	if e.st, err = store.Open(e.dbPath, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.st.Check(); err != nil {
			t.Errorf("store Check: %v", err)
		}
		e.st.Close()
	})
	box, err := secrets.LoadOrCreate(filepath.Join(dir, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	if e.log, err = audit.Open(e.auditPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.log.Close() })
	e.mgr = New(Config{Store: e.st, Box: box, Audit: e.log})
	return e
}

func (e *env) add(t *testing.T, id, name string, state store.State, reported bool) {
	t.Helper()
	m := &store.Machine{ID: id, Name: name, State: state, Diff: "old diff"}
	if reported {
		m.Reported = &store.BootState{
			PCRs: map[int][]byte{4: {4}, 9: {9}, 15: {15}},
			Events: []eventlog.Event{
				{PCR: 4, Sequence: 0, TypeName: "EV_EFI_BOOT_SERVICES_APPLICATION", Digest: []byte{4}},
				{PCR: 15, Sequence: 1, TypeName: "EV_EVENT_TAG", Digest: []byte{15}},
			},
			At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		}
	}
	if err := e.st.CreateMachine(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func (e *env) entries(t *testing.T) []audit.Entry {
	t.Helper()
	got, err := audit.ReadAll(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestApprovePinsReported(t *testing.T) {
	e := newEnv(t)
	e.add(t, idA, "", store.StatePending, true)
	ctx := WithActor(context.Background(), "operator:1000")
	m, err := e.mgr.Approve(ctx, idA[:10], api.ApproveOptions{Name: "web-1", Policy: api.PolicyIdentityOnly})
	if err != nil {
		t.Fatalf("Approve: %v", err)
	}
	got, err := e.st.Machine(ctx, idA)
	if err != nil {
		t.Fatal(err)
	}
	for _, mc := range []*api.Machine{m, ViewMachine(got)} {
		if mc.State != api.StateApproved || mc.Name != "web-1" || mc.Policy != api.PolicyIdentityOnly || mc.Diff != "" || mc.Reported != nil {
			t.Errorf("approved machine = %+v", mc)
		}
		if mc.Approved == nil || len(mc.Approved.PCRs) != 2 || mc.Approved.PCRs[4][0] != 4 || mc.Approved.PCRs[9][0] != 9 {
			t.Fatalf("Approved = %+v, want PCRs 4 and 9", mc.Approved)
		}
		if _, ok := mc.Approved.PCRs[wire.ReleasePCR]; ok {
			t.Error("PCR 15 was pinned")
		}
		if len(mc.Approved.Events) != 1 || mc.Approved.Events[0].PCR != 4 {
			t.Errorf("Approved events = %+v, want the PCR 4 event only", mc.Approved.Events)
		}
	}
	entries := e.entries(t)
	if len(entries) != 1 || entries[0].Action != "approve" || entries[0].Outcome != "ok" || entries[0].Actor != "operator:1000" || entries[0].MachineID != idA {
		t.Errorf("audit = %+v", entries)
	}
}

func TestApproveDefaultsAndReapproval(t *testing.T) {
	e := newEnv(t)
	e.add(t, idA, "keep", store.StateNeedsReapproval, true)
	m, err := e.mgr.Approve(context.Background(), "keep", api.ApproveOptions{})
	if err != nil {
		t.Fatalf("Approve(needs-reapproval): %v", err)
	}
	if m.Name != "keep" || m.Policy != api.PolicyPinned || m.State != api.StateApproved {
		t.Errorf("approved = %+v, want name kept and policy pinned", m)
	}
	if a := e.entries(t); len(a) != 1 || a[0].Actor != DefaultActor {
		t.Errorf("audit = %+v, want actor %q", a, DefaultActor)
	}
}

func TestApproveRefused(t *testing.T) {
	e := newEnv(t)
	e.add(t, idA, "approved", store.StateApproved, true)
	e.add(t, idB, "unbooted", store.StatePending, false)
	e.add(t, idC, "pending", store.StatePending, true)
	revoked := strings.Repeat("d", 64)
	e.add(t, revoked, "revoked", store.StateRevoked, true)
	tests := []struct {
		name    string
		ref     string
		opts    api.ApproveOptions
		wantErr error
		wantMsg string
	}{
		{"already_approved", "approved", api.ApproveOptions{}, api.ErrConflict, "only pending"},
		{"revoked", "revoked", api.ApproveOptions{}, api.ErrConflict, "only pending"},
		{"no_boot_state", "unbooted", api.ApproveOptions{}, api.ErrConflict, "boot the machine first"},
		{"bad_name", "pending", api.ApproveOptions{Name: "Web_1"}, api.ErrInvalid, "machine name"},
		{"name_too_long", "pending", api.ApproveOptions{Name: strings.Repeat("a", 64)}, api.ErrInvalid, "machine name"},
		{"bad_policy", "pending", api.ApproveOptions{Policy: "trust-me"}, api.ErrInvalid, "policy"},
		{"name_taken", "pending", api.ApproveOptions{Name: "approved"}, api.ErrConflict, "already in use"},
		{"unknown", "nosuch", api.ApproveOptions{}, api.ErrNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.mgr.Approve(context.Background(), tt.ref, tt.opts)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Approve = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
	if m, _ := e.st.Machine(context.Background(), idC); m.State != store.StatePending || m.Name != "pending" {
		t.Errorf("refused approvals changed the machine: %+v", m)
	}
	for _, a := range e.entries(t) {
		if a.Outcome != "refused" || a.Reason == "" {
			t.Errorf("audit entry for a refused approval = %+v", a)
		}
	}
}

func TestResolve(t *testing.T) {
	e := newEnv(t)
	e.add(t, idA, "alpha", store.StatePending, false)
	e.add(t, idB, "beta", store.StatePending, false)
	e.add(t, idC, "aaaaaaaa", store.StatePending, false) // a name that looks like a prefix
	tests := []struct {
		name    string
		ref     string
		wantID  string
		wantErr error
	}{
		{"full_id", idA, idA, nil},
		{"unique_prefix", idB[:9], idB, nil},
		{"upper_case_prefix", strings.ToUpper(idC[:8]), idC, nil},
		{"name", "beta", idB, nil},
		{"ambiguous_prefix", idA[:8] + "", "", api.ErrAmbiguous},
		{"prefix_too_short", idC[:7], "", api.ErrNotFound},
		{"unknown", "0123456789", "", api.ErrNotFound},
		{"empty", "", "", api.ErrInvalid},
		{"too_long", strings.Repeat("a", 200), "", api.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := e.mgr.Machine(context.Background(), tt.ref)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Machine(%q) = %v, want %v", tt.ref, err, tt.wantErr)
				}
				return
			}
			if err != nil || m.ID != tt.wantID {
				t.Errorf("Machine(%q) = %v, %v; want %s", tt.ref, m, err, tt.wantID)
			}
		})
	}
	all, err := e.mgr.Machines(context.Background())
	if err != nil || len(all) != 3 {
		t.Errorf("Machines = %d, %v", len(all), err)
	}
}

func TestRevokeAndForget(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i, st := range []store.State{store.StatePending, store.StateApproved, store.StateNeedsReapproval, store.StateRevoked} {
		id := strings.Repeat(string(rune('a'+i)), 64)
		e.add(t, id, "", st, true)
		m, err := e.mgr.Revoke(ctx, id, "stolen laptop")
		if err != nil {
			t.Fatalf("Revoke(%s): %v", st, err)
		}
		if m.State != api.StateRevoked || m.Reason != "stolen laptop" {
			t.Errorf("Revoke(%s) = %+v", st, m)
		}
	}
	if _, err := e.mgr.Revoke(ctx, strings.Repeat("a", 64), "bad\x00reason"); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Revoke(control characters) = %v, want ErrInvalid", err)
	}
	id := strings.Repeat("a", 64)
	if err := e.mgr.SetSecret(ctx, id, "token", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.Forget(ctx, id); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if _, err := e.st.Machine(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("machine after Forget: %v", err)
	}
	e.add(t, id, "", store.StatePending, false)
	if names, err := e.mgr.SecretNames(ctx, id); err != nil || len(names) != 0 {
		t.Errorf("secrets survived Forget: %v, %v", names, err)
	}
	if err := e.mgr.Forget(ctx, strings.Repeat("9", 64)); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Forget(unknown) = %v, want ErrNotFound", err)
	}
	var actions []string
	for _, a := range e.entries(t) {
		actions = append(actions, a.Action+"/"+a.Outcome)
	}
	want := "revoke/ok revoke/ok revoke/ok revoke/ok revoke/refused secret-set/ok forget/ok secret-list/ok forget/refused"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("audit actions = %s\nwant %s", got, want)
	}
}

func TestSecrets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.add(t, idA, "alpha", store.StatePending, false)
	value := []byte("s3cr3t-VALUE-that-must-not-leak")
	if err := e.mgr.SetSecret(ctx, "alpha", "wg.key", value); err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	if err := e.mgr.SetSecret(ctx, "alpha", "A-token_2", []byte{0}); err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	names, err := e.mgr.SecretNames(ctx, "alpha")
	if err != nil || strings.Join(names, ",") != "A-token_2,wg.key" {
		t.Errorf("SecretNames = %v, %v", names, err)
	}
	plain, err := e.mgr.PlainSecrets(WithActor(ctx, "server"), idA)
	if err != nil || !bytes.Equal(plain["wg.key"], value) || len(plain) != 2 {
		t.Errorf("PlainSecrets = %d secrets, %v", len(plain), err)
	}
	if err := e.mgr.DeleteSecret(ctx, "alpha", "A-token_2"); err != nil {
		t.Errorf("DeleteSecret: %v", err)
	}
	if err := e.mgr.DeleteSecret(ctx, "alpha", "A-token_2"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("DeleteSecret(gone) = %v, want ErrNotFound", err)
	}

	invalid := []struct {
		name, secret string
		value        []byte
	}{
		{"empty_name", "", []byte("v")},
		{"slash_in_name", "a/b", []byte("v")},
		{"dotdot_name", "..", []byte("v")},
		{"dot_name", ".", []byte("v")},
		{"name_too_long", strings.Repeat("n", 65), []byte("v")},
		{"empty_value", "n", nil},
		{"value_too_large", "n", make([]byte, MaxSecretSize+1)},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.mgr.SetSecret(ctx, "alpha", tt.secret, tt.value); !errors.Is(err, api.ErrInvalid) {
				t.Errorf("SetSecret = %v, want ErrInvalid", err)
			}
		})
	}
	if err := e.mgr.SetSecret(ctx, "nosuch", "n", []byte("v")); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("SetSecret(unknown machine) = %v, want ErrNotFound", err)
	}

	// The value is neither in the audit log nor, in plaintext, in the
	// database file.
	if err := e.log.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{e.auditPath, e.dbPath} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, value) {
			t.Errorf("%s contains the secret value", filepath.Base(path))
		}
	}
	found := false
	for _, a := range e.entries(t) {
		if a.Action == "secret-set" && a.Outcome == "ok" && strings.Contains(a.Reason, "wg.key") {
			found = true
		}
		if a.Action == "secret-load" && a.Actor != "server" {
			t.Errorf("secret-load actor = %q, want server", a.Actor)
		}
	}
	if !found {
		t.Error("no audit entry names the secret set")
	}
}
