package cli_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/diskfull"
)

// With the state directory's filesystem full, no operator change happens
// without its audit record: approve, revoke, secret set and forget are
// refused with 503 and a reason, the CLI prints it and exits 1, and the
// store is untouched.
func TestFullDiskRefusesOperatorChanges(t *testing.T) {
	ctx := context.Background()
	dir := diskfull.Mount(t, 2<<20)
	db, err := store.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	box, err := secrets.LoadOrCreate(filepath.Join(dir, "secrets.age.key"))
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.Open(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	pending := testMachines()[1] // needs-reapproval, with a reported state
	approved := testMachines()[0]
	for _, m := range []*store.Machine{pending, approved} {
		if err := db.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	sock := apitest.Serve(t, machines.New(machines.Config{Store: db, Box: box, Audit: al}))

	diskfull.Fill(t, dir)
	for range 1000 { // and what is left in the log's last page
		if err := al.Record(audit.Entry{}); err != nil {
			break
		}
	}
	before := map[string]*store.Machine{}
	for _, id := range []string{pending.ID, approved.ID} {
		before[id], _ = db.Machine(ctx, id)
	}

	tests := []struct {
		name   string
		stdin  string
		args   []string
		method string
		path   string
	}{
		{"approve", "", []string{"machine", "approve", pending.ID}, "POST", "/v1/machines/" + pending.ID + "/approve"},
		{"revoke", "", []string{"machine", "revoke", approved.ID, "--reason", "stolen"}, "POST", "/v1/machines/" + approved.ID + "/revoke"},
		{"secret_set", "v", []string{"secret", "set", approved.ID, "token"}, "PUT", "/v1/machines/" + approved.ID + "/secrets/token"},
		{"forget", "", []string{"machine", "forget", "--yes", approved.ID}, "POST", "/v1/machines/" + approved.ID + "/forget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, sock, tt.stdin, tt.args...)
			t.Logf("CLI: %s", r.stderr)
			if r.code != 1 || !strings.Contains(r.stderr, "not done") || !strings.Contains(r.stderr, "no space left on device") {
				t.Errorf("CLI = exit %d, stderr %q; want exit 1 saying the audit log is full", r.code, r.stderr)
			}
			status := rawStatus(t, sock, tt.method, tt.path, tt.stdin)
			if status != http.StatusServiceUnavailable {
				t.Errorf("%s %s = %d, want 503", tt.method, tt.path, status)
			}
		})
	}
	_, err = client.New(sock).Revoke(ctx, approved.ID, "x")
	if !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("client Revoke = %v, want api.ErrUnavailable", err)
	}
	for id, b := range before {
		after, err := db.Machine(ctx, id)
		if err != nil {
			t.Fatalf("machine %s: %v", id[:8], err)
		}
		if after.Version != b.Version || after.State != b.State {
			t.Errorf("machine %s changed: %s v%d -> %s v%d", id[:8], b.State, b.Version, after.State, after.Version)
		}
	}
	if names, _ := db.Secrets(ctx, approved.ID); len(names) != 0 {
		t.Errorf("secrets = %v, want none", names)
	}
}

// rawStatus sends one request to the admin socket and returns its status.
func rawStatus(t *testing.T, sock, method, path, body string) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequest(method, "http://sealroot"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
