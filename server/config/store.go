package config

import (
	"errors"
	"fmt"
	"strings"
)

// Store backends.
const (
	StoreBBolt = "bbolt"
	StoreEtcd  = "etcd"
)

// StoreConfig selects where the server keeps its state (package
// server/store): the embedded bbolt file in state_dir (one server), or an
// etcd cluster shared by several sealroot servers.
type StoreConfig struct {
	// Backend is "bbolt" (state_dir/state.db, one server) or "etcd"
	// (shared by every server listing the same endpoints and prefix).
	// Default: "bbolt".
	// Example: "etcd".
	Backend string `json:"backend,omitempty"`
	// Endpoints are the etcd members' client URLs (backend etcd).
	// Default: none (required for etcd).
	// Example: ["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"].
	Endpoints []string `json:"endpoints,omitempty"`
	// CertFile and KeyFile are this server's TLS client certificate and
	// key for etcd (PEM); both or neither.
	// Default: none (no client certificate).
	// Example: "/etc/sealroot/etcd-client.pem".
	CertFile string `json:"cert_file,omitempty"`
	// KeyFile is the key of cert_file.
	// Default: none.
	// Example: "/etc/sealroot/etcd-client-key.pem".
	KeyFile string `json:"key_file,omitempty"`
	// CAFile is the CA that signed the etcd members' certificates (PEM).
	// Default: none (the system roots).
	// Example: "/etc/sealroot/etcd-ca.pem".
	CAFile string `json:"ca_file,omitempty"`
	// Prefix is prepended to every key sealroot writes, so several
	// installations can share one etcd cluster.
	// Default: "/sealroot/".
	// Example: "/sealroot/site-a/".
	Prefix string `json:"prefix,omitempty"`
}

// DefaultStorePrefix is the etcd key prefix when none is configured.
const DefaultStorePrefix = "/sealroot/"

// StoreBackend returns the configured backend, bbolt when unset.
func (c *Config) StoreBackend() string {
	if c.Store == nil || c.Store.Backend == "" {
		return StoreBBolt
	}
	return c.Store.Backend
}

func (s *StoreConfig) validate(v *validator) {
	v.check("store.backend", checkOneOf(s.Backend, "", StoreBBolt, StoreEtcd))
	if s.Backend != StoreEtcd {
		if len(s.Endpoints) > 0 || s.CertFile != "" || s.KeyFile != "" || s.CAFile != "" || s.Prefix != "" {
			v.check("store", errors.New(`endpoints, TLS files and prefix need backend "etcd"`))
		}
		return
	}
	if len(s.Endpoints) == 0 {
		v.check("store.endpoints", errors.New("required for backend etcd"))
	}
	for i, e := range s.Endpoints {
		if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
			v.check(fmt.Sprintf("store.endpoints[%d]", i), fmt.Errorf("%q: want an http:// or https:// URL", e))
		}
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		v.check("store.key_file", errors.New("cert_file and key_file go together"))
	}
	for _, f := range []struct{ name, path string }{{"store.cert_file", s.CertFile}, {"store.key_file", s.KeyFile}, {"store.ca_file", s.CAFile}} {
		if f.path != "" {
			v.check(f.name, checkAbsPath(f.path))
		}
	}
	if s.Prefix != "" && (!strings.HasPrefix(s.Prefix, "/") || !strings.HasSuffix(s.Prefix, "/")) {
		v.check("store.prefix", fmt.Errorf("%q: want a path starting and ending with /", s.Prefix))
	}
}
