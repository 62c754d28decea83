package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecureBootInit(t *testing.T) {
	state := t.TempDir()
	r := run(t, "/nonexistent", "", "secureboot", "init", "--state-dir", state)
	if r.code != 0 {
		t.Fatalf("secureboot init: exit %d: %s", r.code, r.stderr)
	}
	for _, f := range []string{"owner.key", "owner.crt", "owner.der", "owner.esl"} {
		if _, err := os.Stat(filepath.Join(state, "secureboot", f)); err != nil {
			t.Errorf("secureboot init left no %s: %v", f, err)
		}
	}
	if !strings.Contains(r.stdout, "enroll in db: ") || !strings.Contains(r.stdout, "owner.esl") {
		t.Errorf("secureboot init printed %q", r.stdout)
	}
	if r := run(t, "/nonexistent", "", "secureboot", "init", "--state-dir", state); r.code != 1 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("second init = %d %q, want exit 1 pointing at --force", r.code, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "secureboot", "sign", "--state-dir", state, filepath.Join(state, "missing.efi"), filepath.Join(state, "out.efi")); r.code != 1 {
		t.Errorf("sign missing image: exit %d, want 1 (%s)", r.code, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "secureboot", "sign", "only-one-arg"); r.code != 2 {
		t.Errorf("sign with one argument: exit %d, want 2", r.code)
	}
}

// TestSecureBootUpdate writes a signed db update of the owner's signature
// list with a KEK pair (another init's key standing in for the site's
// KEK): the file ends with owner.esl after the authentication header. A
// key that does not match the certificate, or no key, is refused.
func TestSecureBootUpdate(t *testing.T) {
	state, kek := t.TempDir(), t.TempDir()
	for _, dir := range []string{state, kek} {
		if r := run(t, "/nonexistent", "", "secureboot", "init", "--state-dir", dir); r.code != 0 {
			t.Fatalf("secureboot init: exit %d: %s", r.code, r.stderr)
		}
	}
	key, cert := filepath.Join(kek, "secureboot", "owner.key"), filepath.Join(kek, "secureboot", "owner.crt")
	out := filepath.Join(t.TempDir(), "db.auth")
	r := run(t, "/nonexistent", "", "secureboot", "update", "--state-dir", state, "--key", key, "--cert", cert, out)
	if r.code != 0 {
		t.Fatalf("secureboot update: exit %d: %s", r.code, r.stderr)
	}
	auth, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	esl, _ := os.ReadFile(filepath.Join(state, "secureboot", "owner.esl"))
	if !bytes.HasSuffix(auth, esl) || len(auth) < 16+24+len(esl)+500 {
		t.Errorf("db.auth (%d bytes) does not end with owner.esl after an authentication header", len(auth))
	}
	if r := run(t, "/nonexistent", "", "secureboot", "update", "--state-dir", state, "--key", key,
		"--cert", filepath.Join(state, "secureboot", "owner.crt"), out); r.code != 1 || !strings.Contains(r.stderr, "is not for key") {
		t.Errorf("update with a certificate of another key = %d %q, want exit 1", r.code, r.stderr)
	}
	if r := run(t, "/nonexistent", "", "secureboot", "update", "--state-dir", state, out); r.code != 1 || !strings.Contains(r.stderr, "--key") {
		t.Errorf("update without --key = %d %q, want exit 1", r.code, r.stderr)
	}
}
