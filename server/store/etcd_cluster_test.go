package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// twoServers opens two Etcd stores on one cluster of members members, each
// with its own client, as two sealroot servers would.
func twoServers(t *testing.T, members int) (*Etcd, *Etcd) {
	t.Helper()
	c := etcdtest.Start(t, members)
	open := func() *Etcd {
		s, err := NewEtcd(context.Background(), c.Client(), etcdtest.Prefix(t), nil)
		if err != nil {
			t.Fatalf("NewEtcd: %v", err)
		}
		return s
	}
	return open(), open()
}

// errStale is what a release refuses with when the record moved on.
var errStale = errors.New("stale: version or reset count changed")

// release is the release decision of attest: commit one boot with reset
// count reset only if the machine is still at the version read and has not
// accepted that reset count already.
func release(ctx context.Context, s Store, id string, version uint64, reset uint32) error {
	_, err := s.UpdateMachine(ctx, id, func(m *Machine) error {
		if m.Version != version || m.State != StateApproved || m.ResetCount >= reset {
			return errStale
		}
		m.ResetCount = reset
		m.BootCount++
		return nil
	})
	return err
}

// Two servers releasing the same boot at the same moment: at most one
// release, because the reset count is compared and set in the transaction.
func TestEtcdRacingReleasesAtMostOne(t *testing.T) {
	ctx := context.Background()
	a, b := twoServers(t, 3)
	m := testMachine(1)
	m.State = StateApproved
	if err := a.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	for boot := uint32(1); boot <= 10; boot++ {
		read, err := b.Machine(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			released int
		)
		for i := range 8 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				err := release(ctx, s, m.ID, read.Version, boot)
				switch {
				case err == nil:
					mu.Lock()
					released++
					mu.Unlock()
				case !errors.Is(err, errStale):
					t.Errorf("release: %v", err)
				}
			})
		}
		wg.Wait()
		if released != 1 {
			t.Errorf("boot %d: %d releases, want exactly 1", boot, released)
		}
	}
	got, err := a.Machine(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.BootCount != 10 || got.ResetCount != 10 {
		t.Errorf("after 10 boots: BootCount %d ResetCount %d, want 10 10", got.BootCount, got.ResetCount)
	}
}

// Two servers enrolling machines under one name at once: one wins, the
// other gets ErrNameTaken; renames race the same way.
func TestEtcdNamesUniqueAcrossServers(t *testing.T) {
	ctx := context.Background()
	a, b := twoServers(t, 1)
	for round := range 5 {
		name := fmt.Sprintf("web-%d", round)
		ma, mb := testMachine(100+2*round), testMachine(101+2*round)
		ma.Name, mb.Name = name, name
		var errA, errB error
		var wg sync.WaitGroup
		wg.Go(func() { errA = a.CreateMachine(ctx, ma) })
		wg.Go(func() { errB = b.CreateMachine(ctx, mb) })
		wg.Wait()
		if (errA == nil) == (errB == nil) {
			t.Fatalf("round %d: create errors %v and %v, want exactly one ErrNameTaken", round, errA, errB)
		}
		if err := errors.Join(errA, errB); !errors.Is(err, ErrNameTaken) {
			t.Errorf("round %d: loser got %v, want ErrNameTaken", round, err)
		}
	}
	// Renames of two existing machines to one new name.
	x, y := testMachine(1), testMachine(2)
	for _, m := range []*Machine{x, y} {
		if err := a.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var errA, errB error
	var wg sync.WaitGroup
	rename := func(s Store, id string) error {
		_, err := s.UpdateMachine(ctx, id, func(m *Machine) error { m.Name = "db-1"; return nil })
		return err
	}
	wg.Go(func() { errA = rename(a, x.ID) })
	wg.Go(func() { errB = rename(b, y.ID) })
	wg.Wait()
	if (errA == nil) == (errB == nil) || !errors.Is(errors.Join(errA, errB), ErrNameTaken) {
		t.Errorf("racing renames: %v and %v, want exactly one ErrNameTaken", errA, errB)
	}
	ms, err := b.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, m := range ms {
		names[m.Name]++
	}
	for n, c := range names {
		if c > 1 {
			t.Errorf("name %q held by %d machines", n, c)
		}
	}
}

// A revocation committed through one server is what the other server's
// next transaction decides on: a release prepared on the old record is
// refused.
func TestEtcdRevocationSeenByOtherServer(t *testing.T) {
	ctx := context.Background()
	a, b := twoServers(t, 1)
	m := testMachine(1)
	m.State = StateApproved
	if err := a.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	read, err := b.Machine(ctx, m.ID) // b's exchange read the record
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := a.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.State = StateRevoked; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if revoked.Version == read.Version {
		t.Fatal("revocation left the version unchanged")
	}
	if err := release(ctx, b, m.ID, read.Version, 1); !errors.Is(err, errStale) {
		t.Fatalf("release on the other server after revocation = %v, want errStale", err)
	}
	got, err := b.Machine(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateRevoked || got.BootCount != 0 {
		t.Errorf("after refused release: state %s boots %d, want revoked 0", got.State, got.BootCount)
	}
}

// Versions handed out by two servers at once never repeat: the counter key
// is compared and set in every transaction that bumps it.
func TestEtcdVersionsUniqueAcrossServers(t *testing.T) {
	ctx := context.Background()
	a, b := twoServers(t, 1)
	const n = 20
	versions := make([]uint64, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			m := testMachine(i)
			if err := s.CreateMachine(ctx, m); err != nil {
				t.Errorf("CreateMachine: %v", err)
			}
			versions[i] = m.Version
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, v := range versions {
		if seen[v] {
			t.Errorf("version %d handed out twice", v)
		}
		seen[v] = true
	}
}

// OpenEtcd, as the server calls it from its store configuration, reaches
// the cluster by its endpoints and keeps state under its prefix.
func TestOpenEtcdFromConfig(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	cfg := EtcdConfig{Endpoints: c.Endpoints, Prefix: etcdtest.Prefix(t)}
	s, err := OpenEtcd(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("OpenEtcd: %v", err)
	}
	if err := s.CreateMachine(ctx, testMachine(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	other, err := OpenEtcd(ctx, EtcdConfig{Endpoints: c.Endpoints, Prefix: cfg.Prefix + "other/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if ms, err := other.Machines(ctx); err != nil || len(ms) != 0 {
		t.Errorf("Machines under another prefix = %d, %v; want none", len(ms), err)
	}
	if _, err := OpenEtcd(ctx, EtcdConfig{}, nil); err == nil {
		t.Error("OpenEtcd without endpoints succeeded")
	}
}
