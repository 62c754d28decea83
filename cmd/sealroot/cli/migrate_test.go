package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/wire"
)

// TestMigrateStore: `sealroot migrate-store` moves a stopped server's
// bbolt state into an empty etcd prefix given by the configuration's store
// section: --dry-run counts and writes nothing, the run copies, a second
// run refuses the now non-empty target and writes nothing more, and a
// source in use is refused.
func TestMigrateStore(t *testing.T) {
	ctx := context.Background()
	stateDir := t.TempDir()
	src, err := store.Open(filepath.Join(stateDir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.PutGroup(ctx, &store.Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range testMachines() {
		if err := src.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
		if err := src.PutSecret(ctx, m.ID, "root-password", []byte("age-ciphertext")); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.PutUser(ctx, &store.User{Name: "ada", Hash: "h"}, true); err != nil {
		t.Fatal(err)
	}

	c := etcdtest.Start(t, 1)
	prefix := etcdtest.Prefix(t)
	cfgPath := filepath.Join(t.TempDir(), "sealroot.json")
	cfg := fmt.Sprintf(`{"state_dir": %q, "store": {"backend": "etcd", "endpoints": [%q], "prefix": %q}}`, stateDir, c.Endpoints[0], prefix)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cl := c.Client()
	keys := func() int64 {
		t.Helper()
		r, err := cl.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return r.Count
	}

	// The server still holds the database: refused.
	r := run(t, "", "", "migrate-store", "--config", cfgPath)
	if r.code != 1 || !strings.Contains(r.stderr, "stop the server first") {
		t.Fatalf("migrate-store while the database is open: %+v", r)
	}
	src.Close()

	machines := len(testMachines())
	r = run(t, "", "", "migrate-store", "--config", cfgPath, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("would copy %d machines", machines)) ||
		!strings.Contains(r.stdout, fmt.Sprintf("%d secrets, 1 groups", machines)) || !strings.Contains(r.stdout, "nothing written") {
		t.Fatalf("dry run: %+v", r)
	}
	if n := keys(); n != 0 {
		t.Fatalf("the dry run wrote %d keys", n)
	}

	r = run(t, "", "", "migrate-store", "--config", cfgPath)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("copied %d machines", machines)) {
		t.Fatalf("migrate-store: %+v", r)
	}
	dst, err := store.NewEtcd(ctx, cl, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := dst.Machines(ctx)
	if err != nil || len(ms) != machines {
		t.Fatalf("etcd holds %d machines, %v; want %d", len(ms), err, machines)
	}
	if ct, err := dst.Secret(ctx, ms[0].ID, "root-password"); err != nil || string(ct) != "age-ciphertext" {
		t.Fatalf("secret after migration = %q, %v", ct, err)
	}
	if _, err := dst.User(ctx, "ada"); err != nil {
		t.Fatalf("user after migration: %v", err)
	}

	before := keys()
	for _, args := range [][]string{{"--dry-run"}, {}} {
		r = run(t, "", "", append([]string{"migrate-store", "--config", cfgPath}, args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "is not empty, nothing copied") {
			t.Fatalf("migrate-store %v into a non-empty target: %+v", args, r)
		}
	}
	if n := keys(); n != before {
		t.Fatalf("a refused migration changed the target: %d keys -> %d", before, n)
	}

	// Flags override the file; an unreachable cluster or a missing
	// store is a clear error.
	r = run(t, "", "", "migrate-store", "--config", cfgPath, "--prefix", prefix+"other/", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, prefix+"other/") {
		t.Fatalf("--prefix: %+v", r)
	}
	r = run(t, "", "", "migrate-store", "--state-dir", stateDir, "--config", filepath.Join(t.TempDir(), "none.json"))
	if r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("missing --config file: %+v", r)
	}
	noStore := filepath.Join(t.TempDir(), "bbolt.json")
	os.WriteFile(noStore, []byte(fmt.Sprintf(`{"state_dir": %q}`, stateDir)), 0o600)
	r = run(t, "", "", "migrate-store", "--config", noStore)
	if r.code != 2 || !strings.Contains(r.stderr, "no etcd store") {
		t.Fatalf("no etcd store: %+v", r)
	}
	start := time.Now()
	r = run(t, "", "", "migrate-store", "--config", noStore, "--endpoints", "http://127.0.0.1:1", "--dry-run", "--timeout", "1s")
	if r.code != 1 || !strings.Contains(r.stderr, "no answer") {
		t.Fatalf("unreachable etcd: %+v (after %v)", r, time.Since(start))
	}
}
