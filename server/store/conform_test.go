package store

import (
	"context"
	"testing"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// testStore is what the conformance tests use of a backend.
type testStore interface {
	Store
	UserStore
	LeaseStore
	DHCPStore
	PutBootLog(ctx context.Context, id string, l BootLog) error
	BootLogs(ctx context.Context, id string) ([]BootLog, error)
}

// forEachStore runs the conformance test fn against each backend: the
// embedded bbolt store and the etcd store on a real embedded etcd member.
// The same test, the same expectations.
func forEachStore(t *testing.T, fn func(*testing.T, testStore)) {
	t.Run("bbolt", func(t *testing.T) {
		db, _ := openTestDB(t)
		fn(t, db)
	})
	t.Run("etcd", func(t *testing.T) { fn(t, openTestEtcd(t)) })
}

// openTestEtcd starts a one-member etcd and opens a store on it.
func openTestEtcd(t *testing.T) *Etcd {
	t.Helper()
	c := etcdtest.Start(t, 1)
	s, err := NewEtcd(context.Background(), c.Client(), etcdtest.Prefix(t), nil)
	if err != nil {
		t.Fatalf("NewEtcd: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
