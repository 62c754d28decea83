package store

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// The etcd store over client TLS end to end: an embedded member serving
// clients over TLS only and requiring a client certificate from its CA
// (--client-cert-auth). A store opened with the configuration's TLS
// fields (certificate, key, CA) works; without a client certificate, with
// one from another CA, or trusting another CA for the member, opening
// fails at once with ErrEtcdTLS and says which.
func TestEtcdClientTLS(t *testing.T) {
	ca := etcdtest.NewCA(t, "etcd-ca")
	c := etcdtest.StartTLS(t, 1, ca)
	cert, key := ca.Issue(t, "sealroot-a", false)
	other := etcdtest.NewCA(t, "other-ca")
	otherCert, otherKey := other.Issue(t, "sealroot-x", false)
	good := EtcdConfig{Endpoints: c.Endpoints, CertFile: cert, KeyFile: key, CAFile: ca.File, Prefix: etcdtest.Prefix(t)}
	if !strings.HasPrefix(c.Endpoints[0], "https://") {
		t.Fatalf("endpoints %v, want https", c.Endpoints)
	}

	t.Run("client_certificate", func(t *testing.T) {
		st, err := OpenEtcd(t.Context(), good, nil)
		if err != nil {
			t.Fatalf("OpenEtcd with the client certificate: %v", err)
		}
		defer st.Close()
		l := DHCPLease{MAC: "52:54:00:00:00:01", Addr: netip.MustParseAddr("192.0.2.10"), Expiry: time.Unix(2e9, 0).UTC()}
		if err := st.PutDHCPLease(t.Context(), l); err != nil {
			t.Fatal(err)
		}
		if ls, err := st.DHCPLeases(t.Context()); err != nil || len(ls) != 1 || ls[0] != l {
			t.Fatalf("DHCPLeases over TLS = %+v, %v", ls, err)
		}
	})

	for _, tc := range []struct {
		name string
		mod  func(*EtcdConfig)
		want string
	}{
		{"no_client_certificate", func(c *EtcdConfig) { c.CertFile, c.KeyFile = "", "" }, "requires a TLS client certificate"},
		{"certificate_from_another_CA", func(c *EtcdConfig) { c.CertFile, c.KeyFile = otherCert, otherKey }, "store.cert_file is not signed by a CA the member trusts"},
		{"member_from_another_CA", func(c *EtcdConfig) { c.CAFile = other.File }, "does not verify against store.ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			start := time.Now()
			st, err := OpenEtcd(t.Context(), cfg, nil)
			if err == nil {
				st.Close()
				t.Fatal("OpenEtcd succeeded")
			}
			t.Logf("OpenEtcd = %v (%v)", err, time.Since(start).Round(time.Millisecond))
			if !errors.Is(err, ErrEtcdTLS) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenEtcd = %v, want ErrEtcdTLS saying %q", err, tc.want)
			}
			if d := time.Since(start); d > etcdRequestTimeout/2 {
				t.Errorf("OpenEtcd took %v to fail, want the refusal at once, not a request timeout", d)
			}
		})
	}
}
