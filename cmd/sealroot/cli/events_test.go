package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/sealroot/sealroot/cmd/sealroot/cli"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// plainDaemon runs a real sealroot daemon (no storage services) in a
// temporary state directory holding one pending machine, web1 (idA).
func plainDaemon(t *testing.T) (socket string) {
	socket, _ = plainDaemonMetrics(t)
	return socket
}

// plainDaemonMetrics is plainDaemon also serving metrics on loopback; it
// returns the metrics address.
func plainDaemonMetrics(t *testing.T) (socket, metricsAddr string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sealroot-ev-") // short: the socket path must fit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := pki.Init(server.PKIDir(dir), pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.CreateMachine(context.Background(), &store.Machine{ID: idA, Name: "web1", State: store.StatePending,
		Policy: store.PolicyPinned, Root: wire.RootPlan{Kind: wire.RootNone}, Reported: &store.BootState{}})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{StateDir: dir, AttestAddr: "127.0.0.1:0", AdminSocket: filepath.Join(dir, "admin.sock"),
		MetricsAddr: "127.0.0.1:0"}
	addrs := serveDaemon(t, cfg)
	return cfg.AdminSocket, addrs.Metrics.String()
}

func waitFor(t *testing.T, what string, buf *testenv.Buffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q:\n%s", what, want, buf.String())
		}
	}
}

// `sealroot events --follow` sees a decision another CLI call makes, as
// it happens; `sealroot audit` then finds it with the operator as actor.
func TestEventsFollow(t *testing.T) {
	sock := plainDaemon(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testenv.Buffer
	exit := make(chan int, 1)
	go func() {
		exit <- cli.Main(ctx, []string{"--socket", sock, "--json", "events", "--follow", "--machine", "web1"},
			strings.NewReader(""), &stdout, &stderr)
	}()
	waitFor(t, "events stderr", &stderr, "following new events")

	r := run(t, sock, "", "machine", "revoke", "web1", "--reason", "stolen")
	if r.code != 0 {
		t.Fatalf("revoke: exit %d, %s", r.code, r.stderr)
	}
	waitFor(t, "events --follow", &stdout, `"action":"revoke"`)
	cancel()
	if code := <-exit; code != 0 {
		t.Errorf("events --follow exit %d after interrupt, stderr %s", code, stderr.String())
	}
	var ev api.AuditEntry
	line, _, _ := strings.Cut(stdout.String(), "\n")
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("event line %q: %v", line, err)
	}
	if ev.MachineID != idA || ev.Outcome != "ok" || !strings.HasPrefix(ev.Actor, "operator:") || ev.Reason == "" {
		t.Errorf("event = %+v, want web1's revoke by operator:<uid> with its reason", ev)
	}

	r = run(t, sock, "", "audit", "--machine", idA[:8], "--since", "1h")
	if r.code != 0 || !strings.Contains(r.stdout, "revoke") || !strings.Contains(r.stdout, "operator:") {
		t.Errorf("audit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, sock, "", "audit", "--since", "yesterday")
	if r.code != 2 {
		t.Errorf("audit --since yesterday: exit %d, want 2 (usage)", r.code)
	}
	r = run(t, sock, "", "events", "--machine", "nosuch")
	if r.code == 0 {
		t.Errorf("events --machine nosuch: exit 0, want an error")
	}
}
