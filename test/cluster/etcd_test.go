package cluster

import (
	"os"
	"path/filepath"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// etcdClientCert gives the server whose state directory is dir its etcd
// client certificate, named name and signed by ca (the members require
// one), with its key and ca's certificate, at etcdFile(dir, ...).
func etcdClientCert(t *testing.T, ca *etcdtest.CA, name, dir string) {
	t.Helper()
	cert, key := ca.Issue(t, name, false)
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	for file, from := range map[string]string{"cert": cert, "key": key, "ca": ca.File} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(etcdFile(dir, file), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// etcdFile is the path of the etcd client file ("cert", "key" or "ca") of
// the server whose state directory is dir.
func etcdFile(dir, file string) string { return filepath.Join(dir, "etcd", file+".pem") }

// etcdUsers turns etcd authentication on, with a user for each server
// named (the CN of its etcd client certificate, no password) whose one
// role grants readwrite on prefix only, as docs/architecture.md ("Trust in
// etcd") locks etcd down. The cluster's own Client stays root.
func etcdUsers(t *testing.T, etcd *etcdtest.Cluster, prefix string, names ...string) {
	t.Helper()
	ctx := t.Context()
	admin := etcd.Client()
	noPassword := &clientv3.UserAddOptions{NoPassword: true}
	steps := []func() error{
		func() error { _, err := admin.UserAddWithOptions(ctx, "root", "", noPassword); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "sealroot"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "sealroot", prefix, clientv3.GetPrefixRangeEnd(prefix),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
	}
	for _, name := range names {
		steps = append(steps,
			func() error { _, err := admin.UserAddWithOptions(ctx, name, "", noPassword); return err },
			func() error { _, err := admin.UserGrantRole(ctx, name, "sealroot"); return err })
	}
	steps = append(steps, func() error { _, err := admin.AuthEnable(ctx); return err })
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd authentication: %v", err)
		}
	}
}
