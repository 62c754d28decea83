package cli_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPKIInit(t *testing.T) {
	state := t.TempDir()
	r := run(t, "/nonexistent", "", "pki", "init", "--state-dir", state, "--dns", "sealroot.lan", "--ip", "10.0.0.1")
	if r.code != 0 {
		t.Fatalf("pki init: exit %d: %s", r.code, r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(state, "pki", "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("server.crt is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "sealroot.lan" ||
		len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("server cert SANs = %v %v, want sealroot.lan 10.0.0.1", cert.DNSNames, cert.IPAddresses)
	}

	caBefore, _ := os.ReadFile(filepath.Join(state, "pki", "ca.crt"))
	r = run(t, "/nonexistent", "", "pki", "init", "--state-dir", state)
	if r.code != 1 || !strings.Contains(r.stderr, "a CA already exists") || !strings.Contains(r.stderr, "--new-ca") ||
		!strings.Contains(r.stderr, "pki renew") {
		t.Errorf("second pki init = %d %q, want exit 1 pointing at pki renew and --new-ca", r.code, r.stderr)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(state, "pki", "ca.crt")); !bytes.Equal(caBefore, caAfter) {
		t.Errorf("a refused pki init changed the CA")
	}
	if r := run(t, "/nonexistent", "", "pki", "init", "--state-dir", state, "--force"); r.code != 2 {
		t.Errorf("pki init --force = %d %q, want a usage error (the flag is --new-ca)", r.code, r.stderr)
	}
	r = run(t, "/nonexistent", "", "pki", "init", "--state-dir", state, "--new-ca", "--dns", "sealroot.lan", "--ip", "10.0.0.1")
	if r.code != 0 || !strings.Contains(r.stderr, "rebuild every initramfs") {
		t.Errorf("pki init --new-ca = %d %q, want 0 and the rebuild warning", r.code, r.stderr)
	}

	// renew keeps the CA and the names, or takes new ones.
	caBefore, _ = os.ReadFile(filepath.Join(state, "pki", "ca.crt"))
	r = run(t, "/nonexistent", "", "pki", "renew", "--state-dir", state)
	if r.code != 0 || !strings.Contains(r.stdout, "names: sealroot.lan, 10.0.0.1\n") {
		t.Errorf("pki renew = %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, "/nonexistent", "", "pki", "renew", "--state-dir", state, "--ip", "10.0.0.2")
	if r.code != 0 || !strings.Contains(r.stdout, "names: 10.0.0.2\n") {
		t.Errorf("pki renew --ip = %d %q %q", r.code, r.stdout, r.stderr)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(state, "pki", "ca.crt")); !bytes.Equal(caBefore, caAfter) {
		t.Errorf("pki renew changed the CA")
	}
	r = run(t, "/nonexistent", "", "pki", "status", "--state-dir", state)
	if r.code != 0 || !strings.Contains(r.stdout, "names:       10.0.0.2\n") || strings.Contains(r.stdout, "WARNING") {
		t.Errorf("pki status = %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "pki", "init", "--ip", "not-an-ip"); r.code != 2 {
		t.Errorf("pki init --ip not-an-ip: exit %d, want 2 (%s)", r.code, r.stderr)
	}
}
