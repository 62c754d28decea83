package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPKIIssueAndRequest(t *testing.T) {
	a := t.TempDir()
	if r := run(t, "/nonexistent", "", "pki", "init", "--state-dir", a, "--dns", "a.lan"); r.code != 0 {
		t.Fatalf("pki init: %d %s", r.code, r.stderr)
	}
	out := filepath.Join(t.TempDir(), "b")
	r := run(t, "/nonexistent", "", "pki", "issue", "--state-dir", a, "--out", out, "--dns", "b.lan", "--ip", "10.0.0.2")
	if r.code != 0 || !strings.Contains(r.stdout, "names: b.lan, 10.0.0.2\n") {
		t.Fatalf("pki issue = %d %q %q", r.code, r.stdout, r.stderr)
	}
	for _, f := range []string{"ca.crt", "server.crt", "server.key"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("pki issue did not write %s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "ca.key")); err == nil {
		t.Error("pki issue copied the CA key")
	}
	r = run(t, "/nonexistent", "", "pki", "issue", "--state-dir", a, "--out", t.TempDir(), "--dns", "*.lan")
	if r.code != 1 || !strings.Contains(r.stderr, "bad server name") {
		t.Errorf("pki issue --dns '*.lan' = %d %q, want exit 1 and bad server name", r.code, r.stderr)
	}

	// The key made on server b never leaves it.
	b := t.TempDir()
	r = run(t, "/nonexistent", "", "pki", "request", "--state-dir", b)
	if r.code != 0 {
		t.Fatalf("pki request = %d %q", r.code, r.stderr)
	}
	bPKI := filepath.Join(b, "pki")
	r = run(t, "/nonexistent", "", "pki", "issue", "--state-dir", a, "--csr", filepath.Join(bPKI, "server.csr"), "--out", bPKI, "--dns", "b.lan")
	if r.code != 0 {
		t.Fatalf("pki issue --csr = %d %q", r.code, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "pki", "status", "--state-dir", b); r.code != 0 {
		t.Errorf("pki status on b = %d %q %q", r.code, r.stdout, r.stderr)
	}
}
