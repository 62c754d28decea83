package cli_test

import (
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
