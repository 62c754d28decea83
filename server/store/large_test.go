package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/sealroot/sealroot/wire"
)

// bigGroup is more machines than etcd allows operations in one
// transaction (128, etcd's default --max-txn-ops, as in etcdtest).
const bigGroup = 150

// Changes that touch many records each stay one change on both backends,
// past etcd's 128 operations per transaction: a big group's root and
// files (every member's Version changes), a machine with many files
// forgotten, a batch of attempts of many machines.
func TestLargeChanges(t *testing.T) { forEachStore(t, testLargeChanges) }

func testLargeChanges(t *testing.T, db testStore) {
	ctx := context.Background()
	if err := db.PutGroup(ctx, &Group{Name: "big"}); err != nil {
		t.Fatal(err)
	}
	var batch []MachineAttempt
	for i := range bigGroup {
		m := testMachine(i)
		m.Group = "big"
		if err := db.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
		batch = append(batch, MachineAttempt{m.ID, BootAttempt{Outcome: "allowed"}})
	}
	versions := func() map[string]uint64 {
		t.Helper()
		ms, err := db.Machines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]uint64{}
		for _, m := range ms {
			out[m.ID] = m.Version
			if _, v, err := db.MachineVersion(ctx, m.ID); err != nil || v != m.Version {
				t.Fatalf("MachineVersion(%.8s) = %d, %v; Machines says %d", m.ID, v, err, m.Version)
			}
		}
		return out
	}
	changed := func(what string, before map[string]uint64) map[string]uint64 {
		t.Helper()
		after := versions()
		for id, v := range before {
			if after[id] == v {
				t.Fatalf("%s: machine %.8s kept version %d", what, id, v)
			}
		}
		return after
	}
	v := versions()
	if err := db.PutGroup(ctx, &Group{Name: "big", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatalf("PutGroup of a group of %d: %v", bigGroup, err)
	}
	v = changed("PutGroup", v)
	if err := db.PutFile(ctx, FileOwner{Group: "big"}, &File{Path: "/etc/motd", Mode: 0o644, Content: []byte("hi")}); err != nil {
		t.Fatalf("PutFile of a group of %d: %v", bigGroup, err)
	}
	v = changed("PutFile", v)
	if err := db.DeleteFile(ctx, FileOwner{Group: "big"}, "/etc/motd"); err != nil {
		t.Fatalf("DeleteFile of a group of %d: %v", bigGroup, err)
	}
	v = changed("DeleteFile", v)
	// A member's own change still moves only its version.
	one := testMachine(0).ID
	if _, err := db.UpdateMachine(ctx, one, func(m *Machine) error { m.State = StateApproved; return nil }); err != nil {
		t.Fatal(err)
	}
	after := versions()
	for id := range v {
		if (after[id] != v[id]) != (id == one) {
			t.Fatalf("approving %.8s: machine %.8s version %d -> %d", one, id, v[id], after[id])
		}
	}

	unknown, err := db.AddAttempts(ctx, batch)
	if err != nil || len(unknown) != 0 {
		t.Fatalf("AddAttempts of %d machines = %v, %v", bigGroup, unknown, err)
	}
	ms, err := db.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if len(m.History) != 1 {
			t.Fatalf("machine %.8s has %d attempts, want 1", m.ID, len(m.History))
		}
	}

	for i := range wire.MaxFiles {
		f := &File{Path: fmt.Sprintf("/etc/f%d", i), Mode: 0o644, Content: []byte("x")}
		if err := db.PutFile(ctx, FileOwner{Machine: one}, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.DeleteMachine(ctx, one); err != nil {
		t.Fatalf("DeleteMachine with %d files: %v", wire.MaxFiles, err)
	}
	if err := db.CreateMachine(ctx, testMachine(0)); err != nil {
		t.Fatal(err)
	}
	if fs, err := db.Files(ctx, FileOwner{Machine: one}); err != nil || len(fs) != 0 {
		t.Fatalf("files of a forgotten, re-enrolled machine = %d, %v", len(fs), err)
	}
}
