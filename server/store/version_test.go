package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/sealroot/sealroot/wire"
)

// Every change a release is decided on gives the machine a version it
// never had; bookkeeping leaves it alone.
func TestVersionChanges(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	if err := db.PutGroup(ctx, &Group{Name: "lab"}); err != nil {
		t.Fatal(err)
	}
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if m.Version == 0 {
		t.Fatal("CreateMachine left Version 0")
	}
	update := func(fn func(*Machine)) func() error {
		return func() error {
			_, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { fn(m); return nil })
			return err
		}
	}
	tests := []struct {
		name   string
		change func() error
		bumps  bool
	}{
		{"approve", update(func(m *Machine) { m.State = StateApproved; m.Approved = m.Reported }), true},
		{"rename", update(func(m *Machine) { m.Name = "web-1" }), true},
		{"policy", update(func(m *Machine) { m.Policy = PolicyIdentityOnly }), true},
		{"set_root", update(func(m *Machine) { m.Root = wire.RootPlan{Kind: wire.RootNFS} }), true},
		{"set_group", update(func(m *Machine) { m.Group = "lab" }), true},
		{"group_root", func() error { return db.PutGroup(ctx, &Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootISCSI}}) }, true},
		{"secret_set", func() error { return db.PutSecret(ctx, m.ID, "k", []byte("c")) }, true},
		{"secret_delete", func() error { return db.DeleteSecret(ctx, m.ID, "k") }, true},
		{"revoke", update(func(m *Machine) { m.State = StateRevoked; m.Reason = "stolen" }), true},
		{"bookkeeping", update(func(m *Machine) { m.BootCount++; m.LastAddress = "192.0.2.1"; m.ResetCount++ }), false},
		{"history", update(func(m *Machine) {
			m.AddAttempt(BootAttempt{Outcome: "refused", Check: "policy"})
			m.LastSeen = m.LastSeen.Add(1)
		}), false},
		{"caller_sets_version", update(func(m *Machine) { m.Version = 1 }), false},
	}
	seen := map[uint64]bool{}
	last := m.Version
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.change(); err != nil {
				t.Fatal(err)
			}
			got, err := db.Machine(ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if bumped := got.Version != last; bumped != tt.bumps {
				t.Fatalf("version %d -> %d: changed = %v, want %v", last, got.Version, bumped, tt.bumps)
			}
			if tt.bumps && seen[got.Version] {
				t.Fatalf("version %d handed out twice", got.Version)
			}
			seen[got.Version] = true
			last = got.Version
		})
	}

	// A forgotten and re-enrolled machine never repeats an old version.
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	again := testMachine(1)
	if err := db.CreateMachine(ctx, again); err != nil {
		t.Fatal(err)
	}
	if again.Version <= last {
		t.Errorf("re-enrolled machine has version %d, not above the last %d", again.Version, last)
	}
}

// History keeps the last MaxHistory attempts, oldest first.
func TestHistoryBounded(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	for i := range MaxHistory + 5 {
		_, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error {
			m.AddAttempt(BootAttempt{Outcome: "refused", Reason: fmt.Sprint(i)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.Machine(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.History) != MaxHistory {
		t.Fatalf("history holds %d attempts, want %d", len(got.History), MaxHistory)
	}
	if first, last := got.History[0].Reason, got.History[MaxHistory-1].Reason; first != "5" || last != fmt.Sprint(MaxHistory+4) {
		t.Errorf("history runs %s..%s, want 5..%d", first, last, MaxHistory+4)
	}
	if got.Version != m.Version {
		t.Errorf("history changed the version %d -> %d", m.Version, got.Version)
	}
}
