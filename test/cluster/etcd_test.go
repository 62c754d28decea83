package cluster

import (
	"os"
	"path/filepath"
	"testing"

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
