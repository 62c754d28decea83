package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestUserLeaseOneMachine: a user's root is leased to one machine at a
// time; the lease is confirmed in the release transaction, ends at the
// machine's next release, its revoke or forget, or FreeUserLease.
func TestUserLeaseOneMachine(t *testing.T) { forEachStore(t, testUserLeaseOneMachine) }

func testUserLeaseOneMachine(t *testing.T, db testStore) {
	ctx := context.Background()
	m1, m2 := testMachine(1), testMachine(2)
	for _, m := range []*Machine{m1, m2} {
		if err := db.CreateMachine(ctx, m); err != nil {
			t.Fatalf("CreateMachine: %v", err)
		}
	}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	if err := db.ClaimUserLease(ctx, "alice", m1.ID, "x1", now); err != nil {
		t.Fatalf("claim m1: %v", err)
	}
	var held *LeaseHeldError
	if err := db.ClaimUserLease(ctx, "alice", m2.ID, "x2", now); !errors.As(err, &held) || held.Lease.MachineID != m1.ID {
		t.Fatalf("claim m2 = %v, want LeaseHeldError naming m1", err)
	}
	boot := func(m *Machine) error { m.BootCount++; return nil }
	if _, err := db.ReleaseWithLease(ctx, m1.ID, "alice", "other-claim", boot); !errors.As(err, &held) {
		t.Fatalf("release with a claim not ours = %v, want LeaseHeldError", err)
	}
	got, err := db.ReleaseWithLease(ctx, m1.ID, "alice", "x1", boot)
	if err != nil {
		t.Fatalf("release m1: %v", err)
	}
	l, err := db.UserLease(ctx, "alice")
	if err != nil || l.Claim != "" || l.Boot != got.BootCount || l.MachineID != m1.ID {
		t.Fatalf("lease = %+v, %v; want confirmed for m1 boot %d", l, err, got.BootCount)
	}
	// m1's next boot (any release) frees it.
	if _, err := db.ReleaseWithLease(ctx, m1.ID, "", "", boot); err != nil {
		t.Fatalf("next release of m1: %v", err)
	}
	if _, err := db.UserLease(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lease after m1's next boot: %v, want ErrNotFound", err)
	}
	// Revoke and forget free leases.
	if err := db.ClaimUserLease(ctx, "alice", m2.ID, "x3", now); err != nil {
		t.Fatalf("claim m2: %v", err)
	}
	if _, err := db.UpdateMachine(ctx, m2.ID, func(m *Machine) error { m.State = StateRevoked; return nil }); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if _, err := db.UserLease(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lease after revoke: %v, want ErrNotFound", err)
	}
	if err := db.ClaimUserLease(ctx, "bob", m1.ID, "x4", now); err != nil {
		t.Fatalf("claim bob: %v", err)
	}
	if err := db.DeleteMachine(ctx, m1.ID); err != nil {
		t.Fatalf("forget: %v", err)
	}
	if ls, err := db.UserLeases(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("leases after forget = %v, %v; want none", ls, err)
	}
	if err := db.ClaimUserLease(ctx, "carol", m2.ID, "x5", now); err != nil {
		t.Fatalf("claim carol: %v", err)
	}
	if l, err := db.FreeUserLease(ctx, "carol", ""); err != nil || l.MachineID != m2.ID {
		t.Fatalf("FreeUserLease = %+v, %v", l, err)
	}
}

// TestUserLeaseRace: machines claiming one user's lease at once: exactly
// one gets it.
func TestUserLeaseRace(t *testing.T) { forEachStore(t, testUserLeaseRace) }

func testUserLeaseRace(t *testing.T, db testStore) {
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = db.ClaimUserLease(ctx, "alice", testMachine(i).ID, "x", time.Now()) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrLeaseHeld):
			t.Fatalf("claim: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d machines got the lease, want 1", won)
	}
}

// TestFreeLetGoLease: a let-go frees the lease only while it is still
// the boot's that let go: not a claim in progress, not a later boot of
// the same machine, not another machine's.
func TestFreeLetGoLease(t *testing.T) { forEachStore(t, testFreeLetGoLease) }

func testFreeLetGoLease(t *testing.T, db testStore) {
	ctx := context.Background()
	m1, m2 := testMachine(1), testMachine(2)
	for _, m := range []*Machine{m1, m2} {
		if err := db.CreateMachine(ctx, m); err != nil {
			t.Fatalf("CreateMachine: %v", err)
		}
	}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	boot := func(m *Machine) error { m.BootCount++; return nil }
	if err := db.ClaimUserLease(ctx, "alice", m1.ID, "x1", now); err != nil {
		t.Fatalf("claim: %v", err)
	}
	var held *LeaseHeldError
	if _, err := db.FreeLetGoLease(ctx, "alice", m1.ID, "x1"); !errors.As(err, &held) {
		t.Fatalf("let-go of a lease still claimed = %v, want LeaseHeldError", err)
	}
	if _, err := db.ReleaseWithLease(ctx, m1.ID, "alice", "x1", boot); err != nil {
		t.Fatalf("release: %v", err)
	}
	// m1 boots again as alice (exchange x2): the let-go of x1 is stale.
	if err := db.ClaimUserLease(ctx, "alice", m1.ID, "x2", now); err != nil {
		t.Fatalf("claim again: %v", err)
	}
	if _, err := db.ReleaseWithLease(ctx, m1.ID, "alice", "x2", boot); err != nil {
		t.Fatalf("release again: %v", err)
	}
	for _, c := range []struct{ machine, exchange string }{{m1.ID, "x1"}, {m2.ID, "x2"}, {m1.ID, ""}} {
		if _, err := db.FreeLetGoLease(ctx, "alice", c.machine, c.exchange); !errors.As(err, &held) || held.Lease.Exchange != "x2" {
			t.Fatalf("FreeLetGoLease(%.8s, %q) = %v, want LeaseHeldError of x2", c.machine, c.exchange, err)
		}
	}
	if _, err := db.UserLease(ctx, "alice"); err != nil {
		t.Fatalf("a refused let-go freed the lease: %v", err)
	}
	l, err := db.FreeLetGoLease(ctx, "alice", m1.ID, "x2")
	if err != nil || l.MachineID != m1.ID {
		t.Fatalf("FreeLetGoLease(m1, x2) = %+v, %v", l, err)
	}
	if _, err := db.FreeLetGoLease(ctx, "alice", m1.ID, "x2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second let-go = %v, want ErrNotFound", err)
	}
	if err := db.ClaimUserLease(ctx, "alice", m2.ID, "x3", now); err != nil {
		t.Fatalf("claim on m2 after the let-go: %v", err)
	}
}
