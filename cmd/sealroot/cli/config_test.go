package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(good, []byte(`{"boot": {"server_ip": "192.168.1.10", "dhcp_interface": "eno1"}}`), 0o600)
	os.WriteFile(bad, []byte(`{"log_level": "loud", "boot": {"server_ip": "x", "tftp": 69}}`), 0o600)

	r := run(t, "/nonexistent.sock", "", "config", "check", good)
	if r.code != 0 || r.stdout != good+": ok\n" {
		t.Errorf("config check good = %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, "/nonexistent.sock", "", "config", "check", bad)
	for _, want := range []string{"log_level: \"loud\": want one of", "\nboot.tftp: unknown field\n", "sealroot: invalid configuration: 3 mistakes\n"} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("config check bad = %d, stderr lacks %q:\n%s", r.code, want, r.stderr)
		}
	}
}

// TestServe_refuses_bad_config: serve checks the whole file before it
// opens anything: no state directory, no socket.
func TestServe_refuses_bad_config(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealroot.json")
	state := filepath.Join(dir, "state")
	sock := filepath.Join(dir, "admin.sock")
	os.WriteFile(cfg, []byte(`{"state_dir": "`+state+`", "admin_socket": "`+sock+`"} {"log_level": "debug"}`), 0o600)
	r := run(t, sock, "", "serve", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "trailing data") {
		t.Errorf("serve = %d, stderr %q; want 1 and trailing data", r.code, r.stderr)
	}
	os.WriteFile(cfg, []byte(`{}`), 0o600)
	r = run(t, sock, "", "serve", "--config", cfg, "--log-level", "chatty", "--state-dir", state)
	if r.code != 1 || !strings.Contains(r.stderr, `log_level: "chatty"`) {
		t.Errorf("serve --log-level chatty = %d, stderr %q", r.code, r.stderr)
	}
	for _, p := range []string{state, sock} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("serve with a bad configuration created %s", p)
		}
	}
}
