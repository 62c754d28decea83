package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// clusterConfig writes a configuration of a server with its own state
// directory on the shared etcd store.
func clusterConfig(t *testing.T, c *etcdtest.Cluster, prefix string) (path, stateDir string) {
	t.Helper()
	stateDir = t.TempDir()
	b, err := json.Marshal(map[string]any{"state_dir": stateDir,
		"store": map[string]any{"backend": "etcd", "endpoints": c.Endpoints, "prefix": prefix}})
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, stateDir
}

func TestClusterJoinLeave(t *testing.T) {
	c := etcdtest.Start(t, 1)
	prefix := etcdtest.Prefix(t)
	cfgA, _ := clusterConfig(t, c, prefix)
	cfgB, _ := clusterConfig(t, c, prefix)

	r := run(t, "/nonexistent", "", "cluster", "members", "--config", cfgA)
	if r.code != 0 || !strings.HasSuffix(r.stdout, " (this server)\n") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("members on A = %d %q %q, want A alone", r.code, r.stdout, r.stderr)
	}
	r = run(t, "/nonexistent", "", "cluster", "recipient", "--config", cfgB)
	recB := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(recB, "age1") {
		t.Fatalf("recipient on B = %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, "/nonexistent", "", "cluster", "join", recB, "--config", cfgB)
	if r.code != 1 || !strings.Contains(r.stderr, "not a member") {
		t.Errorf("join run on non-member B = %d %q, want exit 1 not a member", r.code, r.stderr)
	}
	r = run(t, "/nonexistent", "", "cluster", "join", "age1nope", "--config", cfgA)
	if r.code != 1 || !strings.Contains(r.stderr, "not an age X25519 recipient") {
		t.Errorf("join of a bad recipient = %d %q", r.code, r.stderr)
	}
	r = run(t, "/nonexistent", "", "cluster", "join", recB, "--config", cfgA)
	if r.code != 0 || !strings.Contains(r.stdout, "joined: 2 members") {
		t.Fatalf("join B on A = %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, "/nonexistent", "", "cluster", "members", "--config", cfgB)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("%s (this server)\n", recB)) || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("members on B = %d %q", r.code, r.stdout)
	}
	r = run(t, "/nonexistent", "", "cluster", "leave", recB, "--config", cfgA)
	if r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Errorf("leave without --yes = %d %q, want a usage error asking for --yes", r.code, r.stderr)
	}
	r = run(t, "/nonexistent", "", "cluster", "leave", recB, "--config", cfgA, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "left: 1 members") {
		t.Errorf("leave B = %d %q %q", r.code, r.stdout, r.stderr)
	}
}
