package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/machines"
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
	cfgA, stateA := clusterConfig(t, c, prefix)
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
	r = run(t, "/nonexistent", "", "cluster", "join", pastedIdentity, "--config", cfgA)
	if r.code != 1 || strings.Contains(r.stderr, pastedIdentity[15:]) {
		t.Errorf("join of a pasted identity = %d %q, want exit 1 without echoing it", r.code, r.stderr)
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

	// No server ran: the commands recorded themselves in A's audit log,
	// as the server would, and the pasted identity is nowhere in it.
	raw, err := os.ReadFile(filepath.Join(stateA, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := audit.ReadAll(filepath.Join(stateA, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	checkClusterAudit(t, entries, raw, recB, "cluster-join refused", "cluster-join refused", "cluster-join ok", "cluster-leave ok")
}

// pastedIdentity is an age identity an operator pasted where a recipient
// belongs: refused, and never repeated in an error or the audit log.
const pastedIdentity = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"

// checkClusterAudit wants the cluster records of entries to be want
// ("action outcome"), all by operator:<uid>, those that went ahead naming
// rec, and no secret in the log's bytes raw.
func checkClusterAudit(t *testing.T, entries []audit.Entry, raw []byte, rec string, want ...string) {
	t.Helper()
	actor := fmt.Sprintf("operator:%d", os.Getuid())
	var got []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Action, "cluster-") {
			continue
		}
		got = append(got, e.Action+" "+e.Outcome)
		if e.Actor != actor {
			t.Errorf("%s recorded as %q, want %q", e.Action, e.Actor, actor)
		}
		if e.Outcome == "ok" && !strings.Contains(e.Reason, rec) {
			t.Errorf("%s reason %q does not name the recipient %s", e.Action, e.Reason, rec)
		}
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("cluster audit records = %q, want %q", got, want)
	}
	for _, secret := range []string{pastedIdentity[15:], "AGE-SECRET-KEY-1"} {
		if strings.Contains(strings.ToUpper(string(raw)), secret) {
			t.Errorf("audit log holds %q", secret)
		}
	}
}

// With the server running, the commands go through its admin API: the
// server records them (actor from the socket's peer credentials).
func TestClusterJoinLeaveAuditedByServer(t *testing.T) {
	svc := apitest.NewService(t)
	sock := apitest.Serve(t, svc, api.WithActorFunc(machines.WithActor), api.WithCluster(svc))
	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rec := other.Recipient().String()
	r := run(t, sock, "", "cluster", "join", pastedIdentity)
	if r.code != 1 || strings.Contains(r.stderr, pastedIdentity[15:]) {
		t.Errorf("join of a pasted identity = %d %q, want exit 1 without echoing it", r.code, r.stderr)
	}
	r = run(t, sock, "", "cluster", "join", rec)
	if r.code != 0 || !strings.Contains(r.stdout, "joined: 2 members") {
		t.Fatalf("join = %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, sock, "", "--json", "cluster", "leave", rec, "--yes")
	var res api.ClusterResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || len(res.Recipients) != 1 || slices.Contains(res.Recipients, rec) {
		t.Fatalf("leave = %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, sock, "", "cluster", "leave", rec, "--yes"); r.code != 1 || !strings.Contains(r.stderr, "not a member") {
		t.Errorf("leave of a non-member = %d %q", r.code, r.stderr)
	}
	entries := svc.Audit()
	var raw []byte
	for _, e := range entries {
		b, _ := json.Marshal(e)
		raw = append(raw, b...)
	}
	// The leave of a non-member is recorded before the keyring refuses
	// it, then with its refusal (as every operator change).
	checkClusterAudit(t, entries, raw, rec, "cluster-join refused", "cluster-join ok", "cluster-leave ok", "cluster-leave ok", "cluster-leave refused")
}
