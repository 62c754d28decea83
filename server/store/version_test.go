package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/sealroot/sealroot/wire"
)

// Every change a release is decided on gives the machine a version it
// never had; bookkeeping leaves it alone.
func TestVersionChanges(t *testing.T) { forEachStore(t, testVersionChanges) }

func testVersionChanges(t *testing.T, db testStore) {
	ctx := context.Background()
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
		{"group_menu", func() error {
			return db.PutGroup(ctx, &Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootISCSI}, Menu: &Menu{Images: []string{"a", "b"}}})
		}, true},
		{"menu", update(func(m *Machine) { m.Menu = &Menu{Images: []string{"a", "b"}, Default: "image:a"} }), true},
		{"menu_default", update(func(m *Machine) { m.Menu = &Menu{Images: []string{"a", "b"}, Default: "image:b"} }), true},
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
func TestHistoryBounded(t *testing.T) { forEachStore(t, testHistoryBounded) }

func testHistoryBounded(t *testing.T, db testStore) {
	ctx := context.Background()
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

// AddAttempts appends to each machine's history in one call, keeps the
// last MaxHistory, changes neither Version nor any other field, and hands
// back the attempts of machines the store does not hold.
func TestAddAttempts(t *testing.T) { forEachStore(t, testAddAttempts) }

func testAddAttempts(t *testing.T, db testStore) {
	ctx := context.Background()
	a, b := testMachine(1), testMachine(2)
	for _, m := range []*Machine{a, b} {
		if err := db.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	before, err := db.Machine(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var batch []MachineAttempt
	for i := range MaxHistory + 5 {
		batch = append(batch, MachineAttempt{a.ID, BootAttempt{Outcome: "allowed", Reason: fmt.Sprint(i)}})
	}
	batch = append(batch, MachineAttempt{b.ID, BootAttempt{Outcome: "refused", Check: "quote-signature"}},
		MachineAttempt{"unknown", BootAttempt{Outcome: "refused"}})
	unknown, err := db.AddAttempts(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(unknown) != 1 || unknown[0].MachineID != "unknown" {
		t.Errorf("AddAttempts unknown = %+v, want the one attempt of machine \"unknown\"", unknown)
	}
	got, err := db.Machine(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.History) != MaxHistory || got.History[0].Reason != "5" || got.History[MaxHistory-1].Reason != fmt.Sprint(MaxHistory+4) {
		t.Errorf("history of a = %d attempts %+v, want %d running 5..%d", len(got.History), got.History, MaxHistory, MaxHistory+4)
	}
	got.History = nil
	if !reflect.DeepEqual(got, before) {
		t.Errorf("AddAttempts changed more than the history:\n got %+v\nwant %+v", got, before)
	}
	if gb, err := db.Machine(ctx, b.ID); err != nil || len(gb.History) != 1 || gb.History[0].Check != "quote-signature" {
		t.Errorf("history of b = %+v, %v, want its one refusal", gb, err)
	}
	// The record's other fields and the history survive each other's updates.
	if _, err := db.UpdateMachine(ctx, a.ID, func(m *Machine) error { m.LastAddress = "192.0.2.7"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Machine(ctx, a.ID); len(got.History) != MaxHistory || got.LastAddress != "192.0.2.7" {
		t.Errorf("after an update: %d attempts, address %q", len(got.History), got.LastAddress)
	}
	if err := db.DeleteMachine(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateMachine(ctx, testMachine(1)); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Machine(ctx, a.ID); len(got.History) != 0 {
		t.Errorf("a forgotten and re-enrolled machine has %d old attempts", len(got.History))
	}
}

// MachineVersion reports the State and Version Machine holds, follows
// their changes, and says ErrNotFound for a machine that is gone.
func TestMachineVersion(t *testing.T) { forEachStore(t, testMachineVersion) }

func testMachineVersion(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		full, err := db.Machine(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		state, version, err := db.MachineVersion(ctx, m.ID)
		if err != nil || state != full.State || version != full.Version {
			t.Errorf("%s: MachineVersion = %s, %d, %v; Machine has %s, %d", when, state, version, err, full.State, full.Version)
		}
	}
	check("created")
	if err := db.PutGroup(ctx, &Group{Name: "lab"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.Group = "lab"; return nil }); err != nil {
		t.Fatal(err)
	}
	check("in a group")
	if err := db.PutGroup(ctx, &Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	check("group changed")
	if _, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.State = StateRevoked; return nil }); err != nil {
		t.Fatal(err)
	}
	check("revoked")
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.MachineVersion(ctx, m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("MachineVersion(deleted) = %v, want ErrNotFound", err)
	}
}
