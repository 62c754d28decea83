package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// TestEtcdStoreWithinPrefixRole runs the store on an etcd with
// authentication on, as a user whose one role grants readwrite on the
// installation's prefix only (docs/architecture.md, "Trust in etcd"): every
// conformance test, the server registry, homes and the machine change feed
// work with no other permission, and the same user is refused a write
// outside the prefix and a store on another installation's prefix.
func TestEtcdStoreWithinPrefixRole(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	prefix := etcdtest.Prefix(t)
	other := "/sealroot-test/other-site/"
	admin := c.Client()
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-password"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "sealroot-a"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "sealroot-a", prefix, clientv3.GetPrefixRangeEnd(prefix),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "boot-a", "boot-a-password"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "boot-a", "sealroot-a"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("etcd auth setup: %v", err)
		}
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		Username: "boot-a", Password: "boot-a-password"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	testWithinPrefixRole(t, cl, prefix, other)
}

// testWithinPrefixRole runs the store through cl, whose etcd user's one
// role grants readwrite on prefix only: the conformance tests, the server
// registry, homes and the change feed work, and a write under other (a
// prefix outside the role) and a store there are refused.
func testWithinPrefixRole(t *testing.T, cl *clientv3.Client, prefix, other string) {
	ctx := context.Background()
	open := func(t *testing.T) *Etcd {
		t.Helper()
		s, err := NewEtcd(ctx, cl, prefix+t.Name()+"/", nil)
		if err != nil {
			t.Fatalf("NewEtcd within the role's prefix: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	for name, fn := range map[string]func(*testing.T, testStore){
		"MachineCRUD": testMachineCRUD, "NotFound": testNotFound, "Duplicates": testDuplicates, "Secrets": testSecrets,
		"Groups": testGroups, "UpdateGroup": testUpdateGroup, "Files": testFiles, "BootLogs": testBootLogs,
		"Users": testUsers, "UserLeaseOneMachine": testUserLeaseOneMachine, "FreeLetGoLease": testFreeLetGoLease,
		"MachineVersion": testMachineVersion, "AddAttempts": testAddAttempts,
		"Keyring": func(t *testing.T, s testStore) { testKeyring(t, s.(keyringTestStore)) },
	} {
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}

	t.Run("Cluster", func(t *testing.T) {
		s := open(t)
		rctx, stop := context.WithCancel(ctx)
		registered := make(chan error, 1)
		go func() { registered <- s.RegisterServer(rctx, ServerInfo{Name: "boot-a", Started: time.Now()}) }()
		defer func() {
			stop()
			if err := <-registered; err != nil {
				t.Errorf("RegisterServer: %v", err)
			}
		}()
		changes := make(chan MachineChange, 16)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			s.WatchMachines(rctx, func(ch MachineChange) {
				select {
				case changes <- ch:
				default:
				}
			})
		}()
		defer func() { stop(); <-watched }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			srvs, err := s.Servers(ctx)
			if err != nil {
				t.Fatalf("Servers: %v", err)
			}
			if len(srvs) == 1 && srvs[0].Name == "boot-a" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("servers = %+v, want boot-a registered", srvs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		m := testMachine(1)
		if err := s.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
		if home, err := s.ClaimHome(ctx, m.ID, "boot-a"); err != nil || home != "boot-a" {
			t.Fatalf("ClaimHome = %q, %v; want boot-a", home, err)
		}
		select {
		case <-changes:
		case <-time.After(10 * time.Second):
			t.Fatal("no machine change seen through the watch")
		}
	})

	t.Run("OutsideThePrefix", func(t *testing.T) {
		if _, err := cl.Put(ctx, other+"machines/x", "{}"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Fatalf("put outside the prefix = %v, want permission denied", err)
		}
		s, err := NewEtcd(ctx, cl, other, nil)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Fatalf("store on another installation's prefix = %v, want permission denied", err)
		}
	})
}
