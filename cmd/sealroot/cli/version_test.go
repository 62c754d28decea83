package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/version"
)

func TestVersion(t *testing.T) {
	want := "sealroot " + version.String() + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := run(t, "/nonexistent.sock", "", args...)
		if r.code != 0 || r.stdout != want {
			t.Errorf("sealroot %s = %d %q, want 0 %q", strings.Join(args, " "), r.code, r.stdout, want)
		}
	}
	r := run(t, "/nonexistent.sock", "", "--json", "version")
	var v struct{ Version, Commit string }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version != version.Version() || v.Commit != version.Commit() {
		t.Errorf("sealroot --json version = %q (%v)", r.stdout, err)
	}
}
