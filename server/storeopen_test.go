package server

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// The store section's TLS fields reach etcd as `sealroot serve` opens the
// store: a configuration with endpoints over https, cert_file, key_file
// and ca_file opens the store on a member requiring client certificates;
// the same configuration without cert_file and key_file is refused, saying
// a client certificate is required.
func TestStoreConfigEtcdClientTLS(t *testing.T) {
	ca := etcdtest.NewCA(t, "etcd-ca")
	c := etcdtest.StartTLS(t, 1, ca)
	cert, key := ca.Issue(t, "sealroot-a", false)
	load := func(sc map[string]any) *config.Config {
		t.Helper()
		sc["backend"], sc["endpoints"], sc["prefix"], sc["ca_file"] = "etcd", c.Endpoints, etcdtest.Prefix(t), ca.File
		b, err := json.Marshal(map[string]any{"state_dir": t.TempDir(), "store": sc})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.LoadConfig(path)
		if err != nil {
			t.Fatalf("LoadConfig: %v", err)
		}
		return cfg
	}
	logger := hclog.NewNullLogger()
	st, err := openStore(t.Context(), load(map[string]any{"cert_file": cert, "key_file": key}), logger)
	if err != nil {
		t.Fatalf("openStore with the client certificate: %v", err)
	}
	if _, err := st.Machines(t.Context()); err != nil {
		t.Errorf("Machines over TLS: %v", err)
	}
	st.Close()
	_, err = openStore(t.Context(), load(map[string]any{}), logger)
	if !errors.Is(err, store.ErrEtcdTLS) {
		t.Fatalf("openStore without a client certificate = %v, want ErrEtcdTLS", err)
	}
	t.Logf("without a client certificate: %v", err)
}
