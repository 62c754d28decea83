package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// changeLog collects the changes a watch reports.
type changeLog struct {
	mu      sync.Mutex
	changes []MachineChange
	cond    chan struct{}
}

func watchInto(t *testing.T, w MachineWatcher) *changeLog {
	t.Helper()
	l := &changeLog{cond: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		done <- w.WatchMachines(ctx, func(c MachineChange) {
			l.mu.Lock()
			l.changes = append(l.changes, c)
			l.mu.Unlock()
			select {
			case l.cond <- struct{}{}:
			default:
			}
		})
	}()
	<-started
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchMachines: %v", err)
		}
	})
	time.Sleep(100 * time.Millisecond) // the watch is in place
	return l
}

// wait waits for a change that ok accepts.
func (l *changeLog) wait(t *testing.T, what string, ok func(MachineChange) bool) MachineChange {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		for _, c := range l.changes {
			if ok(c) {
				l.mu.Unlock()
				return c
			}
		}
		l.mu.Unlock()
		select {
		case <-l.cond:
		case <-deadline:
			t.Fatalf("no change reported: %s", what)
		}
	}
}

func testWatchMachines(t *testing.T, writer Store, watcher MachineWatcher) {
	ctx := context.Background()
	l := watchInto(t, watcher)
	m := testMachine(1)
	if err := writer.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	l.wait(t, "create", func(c MachineChange) bool { return c.MachineID == m.ID && c.State == StatePending })
	revoked, err := writer.UpdateMachine(ctx, m.ID, func(m *Machine) error {
		m.State, m.Reason = StateRevoked, "stolen"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := l.wait(t, "revoke", func(c MachineChange) bool { return c.MachineID == m.ID && c.State == StateRevoked })
	if c.Reason != "stolen" || c.Version != revoked.Version || c.Deleted {
		t.Errorf("revoke reported as %+v, want reason stolen, version %d", c, revoked.Version)
	}
	if err := writer.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	l.wait(t, "forget", func(c MachineChange) bool { return c.MachineID == m.ID && c.Deleted })
}

// The feed reports creations, revocations and deletions on both backends.
func TestWatchMachines(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) {
		db, _ := openTestDB(t)
		testWatchMachines(t, db, db)
	})
	t.Run("etcd", func(t *testing.T) {
		s := openTestEtcd(t)
		testWatchMachines(t, s, s)
	})
}

// A change made through one server's store is reported to another
// server's watch on the same three-member cluster.
func TestEtcdWatchAcrossServers(t *testing.T) {
	a, b := twoServers(t, 3)
	testWatchMachines(t, a, b)
}

// The feed goes on when an etcd member of three stops: a revocation made
// after it is still reported.
func TestEtcdWatchSurvivesMemberLoss(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 3)
	a, err := NewEtcd(ctx, c.Client(), etcdtest.Prefix(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewEtcd(ctx, c.Client(), etcdtest.Prefix(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := watchInto(t, b)
	m := testMachine(1)
	if err := a.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	l.wait(t, "create", func(c MachineChange) bool { return c.MachineID == m.ID })
	c.Stop(0)
	var uerr error
	for range 50 { // the client moves to a live member
		uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, uerr = a.UpdateMachine(uctx, m.ID, func(m *Machine) error {
			m.State, m.Reason = StateRevoked, "member down"
			return nil
		})
		cancel()
		if uerr == nil {
			break
		}
	}
	if uerr != nil {
		t.Fatalf("revoke with one member of three down: %v", uerr)
	}
	l.wait(t, "revoke after a member stopped", func(c MachineChange) bool {
		return c.MachineID == m.ID && c.State == StateRevoked
	})
}
