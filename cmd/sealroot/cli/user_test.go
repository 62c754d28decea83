package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
)

func TestUserCommands(t *testing.T) {
	svc := apitest.NewService(t)
	sock := apitest.Serve(t, svc, api.WithUsers(svc))
	const pw = "correct horse battery"
	if r := run(t, sock, pw+"\nignored\n", "user", "add", "alice"); r.code != 0 || r.stdout != "added user alice\n" {
		t.Fatalf("user add: %+v", r)
	}
	if r := run(t, sock, pw+"\n", "user", "add", "alice"); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("second add: %+v", r)
	}
	if r := run(t, sock, "", "user", "add", "bob"); r.code != 1 || !strings.Contains(r.stderr, "empty password") {
		t.Errorf("add without password: %+v", r)
	}
	if r := run(t, sock, strings.Repeat("x", api.MaxPassword+1)+"\n", "user", "add", "bob"); r.code != 1 || !strings.Contains(r.stderr, "longer") {
		t.Errorf("add with a long password: %+v", r)
	}
	if r := run(t, sock, "pw\n", "user", "add", "Bad/Name"); r.code != 1 || !strings.Contains(r.stderr, "invalid user name") {
		t.Errorf("add with a bad name: %+v", r)
	}
	if r := run(t, sock, "new\r\n", "user", "passwd", "alice"); r.code != 0 {
		t.Errorf("passwd: %+v", r)
	}
	r := run(t, sock, "", "user", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "alice") || strings.Contains(r.stdout, "argon2") {
		t.Errorf("list: %+v", r)
	}
	if r := run(t, sock, "", "--json", "user", "list"); r.code != 0 || strings.Contains(r.stdout, "hash") {
		t.Errorf("list --json: %+v", r)
	}
	if r := run(t, sock, "", "user", "rm", "alice"); r.code != 0 {
		t.Errorf("rm: %+v", r)
	}
	if r := run(t, sock, "", "user", "rm", "alice"); r.code != 1 {
		t.Errorf("second rm: %+v", r)
	}
	for _, e := range svc.Audit() {
		if strings.Contains(e.Reason, pw) || strings.Contains(e.Reason, "new") {
			t.Errorf("audit entry holds the password: %+v", e)
		}
	}
	if _, err := svc.Store.User(context.Background(), "alice"); err == nil {
		t.Error("removed user still stored")
	}
}

// TestUserRootCommands: user roots lists who mounts which user's root,
// user free (confirmed) frees it, and a lifecycle operation on a root in
// use is refused naming the machine.
func TestUserRootCommands(t *testing.T) {
	svc := apitest.NewService(t)
	sock := apitest.Serve(t, svc, api.WithUsers(svc), api.WithUserRoots(svc))
	ctx := context.Background()
	if r := run(t, sock, "", "user", "roots"); r.code != 0 || r.stdout != "USER  MACHINE  NAME  SINCE\n" {
		t.Fatalf("user roots, none: %+v", r)
	}
	id := strings.Repeat("ab", 32)
	if err := svc.Store.ClaimUserLease(ctx, "alice", id, "x", time.Now()); err != nil {
		t.Fatal(err)
	}
	if r := run(t, sock, "", "user", "roots"); r.code != 0 || !strings.Contains(r.stdout, "alice  abababababab") {
		t.Errorf("user roots: %+v", r)
	}
	if r := run(t, sock, "", "user", "reset", "--yes", "alice"); r.code != 1 || !strings.Contains(r.stderr, "in use on machine") {
		t.Errorf("reset of a root in use: %+v", r)
	}
	if r := run(t, sock, "", "user", "free", "alice"); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Errorf("free without --yes: %+v", r)
	}
	if r := run(t, sock, "", "user", "free", "--yes", "alice"); r.code != 0 || !strings.Contains(r.stdout, "freed the root of user alice from abababababab") {
		t.Errorf("free: %+v", r)
	}
	if r := run(t, sock, "", "user", "free", "--yes", "alice"); r.code != 1 || !strings.Contains(r.stderr, "holds no root") {
		t.Errorf("second free: %+v", r)
	}
	if r := run(t, sock, "", "user", "free", "--yes", "Bad/Name"); r.code != 1 || !strings.Contains(r.stderr, "invalid user name") {
		t.Errorf("free with a bad name: %+v", r)
	}
}
