package cli_test

import (
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

	r = run(t, "/nonexistent", "", "pki", "init", "--state-dir", state)
	if r.code != 1 || !strings.Contains(r.stderr, "a CA already exists") || !strings.Contains(r.stderr, "--force") {
		t.Errorf("second pki init = %d %q, want exit 1 pointing at --force", r.code, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "pki", "init", "--state-dir", state, "--force"); r.code != 0 {
		t.Errorf("pki init --force = %d %q", r.code, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "pki", "init", "--ip", "not-an-ip"); r.code != 2 {
		t.Errorf("pki init --ip not-an-ip: exit %d, want 2 (%s)", r.code, r.stderr)
	}
}
