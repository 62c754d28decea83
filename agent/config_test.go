package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sealroot test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.json")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	ca := testCAPEM(t)
	good := Config{Servers: []string{"10.0.0.1:4433", "[fd00::1]:4433"}, ServerName: "sealroot.lab", CAPEM: ca, Modules: []string{"virtio_net"}}
	b, _ := json.Marshal(good)
	c, err := LoadConfig(writeConfig(t, string(b)))
	if err != nil {
		t.Fatalf("LoadConfig(valid) = %v", err)
	}
	if c.ServerName != "sealroot.lab" || len(c.Servers) != 2 {
		t.Errorf("LoadConfig(valid) = %+v", c)
	}
	if _, err := c.CertPool(); err != nil {
		t.Errorf("CertPool() = %v", err)
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	ca := testCAPEM(t)
	caJSON, _ := json.Marshal(ca)
	tests := []struct {
		name, json, want string
	}{
		{"no_servers", `{"server_name":"s","ca_pem":` + string(caJSON) + `}`, "servers: at least one"},
		{"server_without_port", `{"servers":["10.0.0.1"],"server_name":"s","ca_pem":` + string(caJSON) + `}`, `"10.0.0.1"`},
		{"server_bad_port", `{"servers":["h:99999"],"server_name":"s","ca_pem":` + string(caJSON) + `}`, "bad port"},
		{"no_server_name", `{"servers":["h:1"],"ca_pem":` + string(caJSON) + `}`, "server_name: required"},
		{"no_ca", `{"servers":["h:1"],"server_name":"s"}`, "ca_pem: no PEM CERTIFICATE"},
		{"garbage_ca", `{"servers":["h:1"],"server_name":"s","ca_pem":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`, "ca_pem: certificate"},
		{"bad_module", `{"servers":["h:1"],"server_name":"s","ca_pem":` + string(caJSON) + `,"modules":["../evil"]}`, "not a module name"},
		{"bad_interface", `{"servers":["h:1"],"server_name":"s","ca_pem":` + string(caJSON) + `,"interface":"a-very-long-interface-name"}`, "not an interface name"},
		{"unknown_field", `{"servers":["h:1"],"server_name":"s","ca_pem":` + string(caJSON) + `,"sever_name":"x"}`, "unknown field"},
		{"trailing_data", `{"servers":["h:1"],"server_name":"s","ca_pem":` + string(caJSON) + `} {}`, "trailing data"},
		{"not_json", `servers = h:1`, "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tt.json))
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadConfig() = %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "nope.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadConfig(missing) = %v, want os.ErrNotExist", err)
	}
}
