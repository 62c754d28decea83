package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server"
)

// writeVendorFiles writes a manufacturer root (PEM) and an EK certificate
// it issued (DER) into dir.
func writeVendorFiles(t *testing.T, dir string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vendor root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ekDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}, root, ek.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ek.der"), ekDER, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEKImport(t *testing.T) {
	state, src := t.TempDir(), t.TempDir()
	writeVendorFiles(t, src)
	r := run(t, "/nonexistent", "", "ek", "import", "--state-dir", state, src)
	if r.code != 0 {
		t.Fatalf("ek import: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "imported 1 manufacturer roots, 0 intermediates, 1 EK certificates") || !strings.Contains(r.stderr, "restart") {
		t.Errorf("ek import printed %q / %q", r.stdout, r.stderr)
	}
	roots, _, err := server.EKDirs(state).LoadCAs()
	if err != nil || roots == nil {
		t.Errorf("server.EKDirs(state).LoadCAs() = %v, %v; want the imported root", roots, err)
	}

	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	if r := run(t, "/nonexistent", "", "ek", "import", "--state-dir", state, junk); r.code != 1 {
		t.Errorf("ek import junk: exit %d, want 1 (%s)", r.code, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "ek", "import", "--state-dir", state, filepath.Join(src, "missing.pem")); r.code != 1 {
		t.Errorf("ek import missing file: exit %d, want 1 (%s)", r.code, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "ek", "import"); r.code != 2 {
		t.Errorf("ek import without paths: exit %d, want 2 (%s)", r.code, r.stderr)
	}
}
