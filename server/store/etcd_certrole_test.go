package store

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// TestEtcdClientCertRole runs the store on an etcd serving clients over
// TLS with client certificates required (--client-cert-auth) and
// authentication on, with no passwords: etcd takes the client
// certificate's common name for the user (docs/architecture.md, "Trust in
// etcd"). A server whose certificate is named for a user whose one role
// grants readwrite on its prefix passes the same checks as
// TestEtcdStoreWithinPrefixRole (conformance, registry, homes, change
// feed; refused outside the prefix), opened through the configuration's
// TLS fields as `sealroot serve` opens it; a certificate from the same CA
// whose name is no etcd user is refused everything.
func TestEtcdClientCertRole(t *testing.T) {
	ctx := context.Background()
	ca := etcdtest.NewCA(t, "etcd-ca")
	c := etcdtest.StartTLS(t, 1, ca)
	prefix := etcdtest.Prefix(t)
	other := "/sealroot-test/other-site/"
	c.EnableAuth(prefix, "boot-a")
	config := func(name string) EtcdConfig {
		cert, key := ca.Issue(t, name, false)
		return EtcdConfig{Endpoints: c.Endpoints, CertFile: cert, KeyFile: key, CAFile: ca.File}
	}

	cl, err := newEtcdClient(ctx, config("boot-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	testWithinPrefixRole(t, cl, prefix, other)

	t.Run("CertificateOfNoUser", func(t *testing.T) {
		cfg := config("boot-x")
		cfg.Prefix = prefix
		s, err := OpenEtcd(ctx, cfg, nil)
		if err == nil {
			s.Close()
		}
		t.Logf("OpenEtcd as boot-x = %v", err)
		if !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Fatalf("store opened with a certificate named for no etcd user = %v, want permission denied", err)
		}
	})
}
