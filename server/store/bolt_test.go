package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/wire"
)

// openTestDB opens a fresh database in t.TempDir and checks its consistency
// and closes it at cleanup.
func openTestDB(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("Check: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db, path
}

func testMachine(i int) *Machine {
	return &Machine{
		ID:        fmt.Sprintf("%064x", i),
		Name:      fmt.Sprintf("m%d", i),
		State:     StatePending,
		EKPublic:  []byte{1, 2, 3},
		AKPublic:  []byte{4, 5, 6},
		Policy:    PolicyPinned,
		FirstSeen: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Reported: &BootState{
			PCRs:   map[int][]byte{4: {0xaa}, 9: {0xbb}},
			Events: []eventlog.Event{{PCR: 4, Sequence: 1, Type: 0x80000003, TypeName: "EV_EFI_BOOT_SERVICES_APPLICATION", Digest: []byte{0xaa}}},
		},
	}
}

func TestOpenModeAndLock(t *testing.T) {
	db, path := openTestDB(t)
	_ = db
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode of %s = %v, want 0600", path, got)
	}
	_, err = open(path, nil, 100*time.Millisecond)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open = %v, want ErrLocked", err)
	}
}

func TestMachineCRUD(t *testing.T) { forEachStore(t, testMachineCRUD) }

func testMachineCRUD(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatalf("CreateMachine: %v", err)
	}
	got, err := db.Machine(ctx, m.ID)
	if err != nil {
		t.Fatalf("Machine: %v", err)
	}
	if got.Name != m.Name || got.State != m.State || string(got.Reported.PCRs[9]) != "\xbb" || got.Reported.Events[0].TypeName != m.Reported.Events[0].TypeName {
		t.Errorf("Machine = %+v, want %+v", got, m)
	}
	upd, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error {
		m.State = StateApproved
		m.BootCount++
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateMachine: %v", err)
	}
	if upd.State != StateApproved || upd.BootCount != 1 {
		t.Errorf("UpdateMachine returned %+v", upd)
	}
	if err := db.CreateMachine(ctx, testMachine(2)); err != nil {
		t.Fatal(err)
	}
	all, err := db.Machines(ctx)
	if err != nil {
		t.Fatalf("Machines: %v", err)
	}
	if len(all) != 2 || all[0].ID != testMachine(1).ID || all[1].ID != testMachine(2).ID {
		t.Errorf("Machines = %d machines, want 2 sorted by ID", len(all))
	}
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatalf("DeleteMachine: %v", err)
	}
	if _, err := db.Machine(ctx, m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Machine after delete = %v, want ErrNotFound", err)
	}
	// The name of a deleted machine is free again.
	if err := db.CreateMachine(ctx, &Machine{ID: "other", Name: m.Name}); err != nil {
		t.Errorf("reuse of a deleted machine's name: %v", err)
	}
}

func TestNotFound(t *testing.T) { forEachStore(t, testNotFound) }

func testNotFound(t *testing.T, db testStore) {
	ctx := context.Background()
	id := testMachine(9).ID
	tests := []struct {
		name string
		do   func() error
	}{
		{"machine", func() error { _, err := db.Machine(ctx, id); return err }},
		{"machine_empty_id", func() error { _, err := db.Machine(ctx, ""); return err }},
		{"update", func() error {
			_, err := db.UpdateMachine(ctx, id, func(*Machine) error { return nil })
			return err
		}},
		{"delete", func() error { return db.DeleteMachine(ctx, id) }},
		{"put_secret", func() error { return db.PutSecret(ctx, id, "s", []byte("x")) }},
		{"secret", func() error { _, err := db.Secret(ctx, id, "s"); return err }},
		{"secrets", func() error { _, err := db.Secrets(ctx, id); return err }},
		{"delete_secret", func() error { return db.DeleteSecret(ctx, id, "s") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, ErrNotFound) {
				t.Errorf("got %v, want ErrNotFound", err)
			}
		})
	}
}

func TestDuplicates(t *testing.T) { forEachStore(t, testDuplicates) }

func testDuplicates(t *testing.T, db testStore) {
	ctx := context.Background()
	a, b := testMachine(1), testMachine(2)
	for _, m := range []*Machine{a, b} {
		if err := db.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("duplicate_id", func(t *testing.T) {
		dup := testMachine(1)
		dup.Name = "fresh"
		if err := db.CreateMachine(ctx, dup); !errors.Is(err, ErrExists) {
			t.Errorf("CreateMachine(same id) = %v, want ErrExists", err)
		}
	})
	t.Run("duplicate_name_create", func(t *testing.T) {
		dup := testMachine(3)
		dup.Name = a.Name
		if err := db.CreateMachine(ctx, dup); !errors.Is(err, ErrNameTaken) {
			t.Errorf("CreateMachine(same name) = %v, want ErrNameTaken", err)
		}
	})
	t.Run("duplicate_name_update", func(t *testing.T) {
		_, err := db.UpdateMachine(ctx, b.ID, func(m *Machine) error { m.Name = a.Name; return nil })
		if !errors.Is(err, ErrNameTaken) {
			t.Errorf("UpdateMachine(rename to taken) = %v, want ErrNameTaken", err)
		}
		got, _ := db.Machine(ctx, b.ID)
		if got.Name != b.Name {
			t.Errorf("name after refused rename = %q, want %q", got.Name, b.Name)
		}
	})
	t.Run("rename_frees_old_name", func(t *testing.T) {
		if _, err := db.UpdateMachine(ctx, b.ID, func(m *Machine) error { m.Name = "renamed"; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := db.UpdateMachine(ctx, a.ID, func(m *Machine) error { m.Name = b.Name; return nil }); err != nil {
			t.Errorf("take a freed name: %v", err)
		}
	})
	t.Run("empty_names_not_unique", func(t *testing.T) {
		for i := 10; i < 12; i++ {
			m := testMachine(i)
			m.Name = ""
			if err := db.CreateMachine(ctx, m); err != nil {
				t.Errorf("CreateMachine(no name) #%d: %v", i, err)
			}
		}
	})
	t.Run("update_must_keep_id", func(t *testing.T) {
		_, err := db.UpdateMachine(ctx, a.ID, func(m *Machine) error { m.ID = "x"; return nil })
		if err == nil {
			t.Error("UpdateMachine changing the ID succeeded")
		}
	})
	t.Run("update_fn_error_returned", func(t *testing.T) {
		sentinel := errors.New("nope")
		_, err := db.UpdateMachine(ctx, a.ID, func(m *Machine) error { m.State = StateRevoked; return sentinel })
		if err != sentinel {
			t.Errorf("UpdateMachine = %v, want fn's error unchanged", err)
		}
		if got, _ := db.Machine(ctx, a.ID); got.State == StateRevoked {
			t.Error("aborted update was stored")
		}
	})
}

func TestSecrets(t *testing.T) { forEachStore(t, testSecrets) }

func testSecrets(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Secrets(ctx, m.ID); err != nil || len(got) != 0 {
		t.Fatalf("Secrets(no secrets) = %v, %v; want empty", got, err)
	}
	for _, n := range []string{"a", "b"} {
		if err := db.PutSecret(ctx, m.ID, n, []byte("ct-"+n)); err != nil {
			t.Fatalf("PutSecret: %v", err)
		}
	}
	if got, err := db.Secret(ctx, m.ID, "a"); err != nil || string(got) != "ct-a" {
		t.Errorf("Secret = %q, %v", got, err)
	}
	all, err := db.Secrets(ctx, m.ID)
	if err != nil || len(all) != 2 || string(all["b"]) != "ct-b" {
		t.Errorf("Secrets = %q, %v", all, err)
	}
	if err := db.DeleteSecret(ctx, m.ID, "a"); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	if _, err := db.Secret(ctx, m.ID, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Secret after delete = %v, want ErrNotFound", err)
	}
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	// A new machine with the same ID starts without the old secrets.
	if err := db.CreateMachine(ctx, testMachine(1)); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Secrets(ctx, m.ID); err != nil || len(got) != 0 {
		t.Errorf("Secrets after DeleteMachine and re-create = %q, %v; want empty", got, err)
	}
}

func TestConcurrentUpdatesKeepAllWrites(t *testing.T) {
	forEachStore(t, testConcurrentUpdatesKeepAllWrites)
}

func testConcurrentUpdatesKeepAllWrites(t *testing.T, db testStore) {
	ctx := context.Background()
	const machines, perMachine = 4, 50
	for i := range machines {
		if err := db.CreateMachine(ctx, testMachine(i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range machines {
		for range perMachine {
			wg.Go(func() {
				if _, err := db.UpdateMachine(ctx, testMachine(i).ID, func(m *Machine) error {
					m.BootCount++
					return nil
				}); err != nil {
					t.Errorf("UpdateMachine: %v", err)
				}
			})
		}
	}
	wg.Wait()
	for i := range machines {
		m, err := db.Machine(ctx, testMachine(i).ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.BootCount != perMachine {
			t.Errorf("machine %d BootCount = %d, want %d", i, m.BootCount, perMachine)
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSecret(ctx, m.ID, "s", []byte("ct")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	db, err = Open(path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if got, err := db.Machine(ctx, m.ID); err != nil || got.Name != m.Name {
		t.Errorf("Machine after reopen = %v, %v", got, err)
	}
	if got, err := db.Secret(ctx, m.ID, "s"); err != nil || string(got) != "ct" {
		t.Errorf("Secret after reopen = %q, %v", got, err)
	}
	if err := db.Check(); err != nil {
		t.Error(err)
	}
}

func TestCorruptRecord(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMachines).Put([]byte(m.ID), []byte(`{"id": "`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Machine(ctx, m.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Machine(corrupt) = %v, want ErrCorrupt", err)
	}
	if _, err := db.Machines(ctx); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Machines(corrupt) = %v, want ErrCorrupt", err)
	}
	if _, err := db.UpdateMachine(ctx, m.ID, func(*Machine) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("UpdateMachine(corrupt) = %v, want ErrCorrupt", err)
	}
	// A corrupt machine can still be deleted, freeing its name.
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Errorf("DeleteMachine(corrupt) = %v", err)
	}
	if err := db.CreateMachine(ctx, testMachine(1)); err != nil {
		t.Errorf("re-create after deleting a corrupt record: %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	db, _ := openTestDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.CreateMachine(ctx, testMachine(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateMachine(canceled) = %v, want context.Canceled", err)
	}
}

// BenchmarkUpdateMachine measures UpdateMachine under many concurrent
// callers (machines attesting at once), each update a durable commit.
func BenchmarkUpdateMachine(b *testing.B) {
	ctx := context.Background()
	db, _ := openTestDB(b)
	const machines = 64
	for i := range machines {
		if err := db.CreateMachine(ctx, testMachine(i)); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	next := 0
	b.SetParallelism(32) // 32 goroutines per GOMAXPROCS
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		id := testMachine(next % machines).ID
		next++
		mu.Unlock()
		for pb.Next() {
			if _, err := db.UpdateMachine(ctx, id, func(m *Machine) error {
				m.BootCount++
				m.LastSeen = time.Now()
				return nil
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// TestBatchIsolation checks that failing updates (fn errors, name
// conflicts) grouped into a batch with good ones fail alone.
func TestBatchIsolation(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	for i := range 2 {
		if err := db.CreateMachine(ctx, testMachine(i)); err != nil {
			t.Fatal(err)
		}
	}
	const n = 60
	sentinel := errors.New("refused")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = db.UpdateMachine(ctx, testMachine(0).ID, func(m *Machine) error {
				switch i % 3 {
				case 0:
					m.BootCount++
					return nil
				case 1:
					m.BootCount += 1000
					return sentinel
				default:
					m.BootCount += 1000
					m.Name = testMachine(1).Name // taken
					return nil
				}
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		var want error
		switch i % 3 {
		case 1:
			want = sentinel
		case 2:
			want = ErrNameTaken
		}
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("update %d = %v, want %v", i, err, want)
		}
	}
	m, err := db.Machine(ctx, testMachine(0).ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.BootCount != n/3 || m.Name != testMachine(0).Name {
		t.Errorf("after the batch: BootCount %d name %q, want %d and %q", m.BootCount, m.Name, n/3, testMachine(0).Name)
	}
}

func TestGroups(t *testing.T) { forEachStore(t, testGroups) }

func testGroups(t *testing.T, db testStore) {
	ctx := context.Background()
	if _, err := db.Group(ctx, "kiosks"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Group before PutGroup = %v; want ErrNotFound", err)
	}
	g := &Group{Name: "kiosks", Root: wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{"image": "kiosk"}}}
	if err := db.PutGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "../x", "a b", strings.Repeat("g", 65)} {
		if err := db.PutGroup(ctx, &Group{Name: bad}); err == nil {
			t.Errorf("PutGroup(%q) accepted", bad)
		}
	}
	got, err := db.Group(ctx, "kiosks")
	if err != nil || got.Root.Kind != wire.RootVolatile || got.Root.Params["image"] != "kiosk" {
		t.Fatalf("Group = %+v, %v", got, err)
	}
	m := testMachine(1)
	m.Group = "kiosks"
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteGroup(ctx, "kiosks"); !errors.Is(err, ErrGroupInUse) {
		t.Fatalf("DeleteGroup with a member = %v; want ErrGroupInUse", err)
	}
	if _, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.Group = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteGroup(ctx, "kiosks"); err != nil {
		t.Fatalf("DeleteGroup = %v", err)
	}
	if gs, err := db.Groups(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("Groups after delete = %v, %v", gs, err)
	}
}
