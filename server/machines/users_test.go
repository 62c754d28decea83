package machines

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/users"
)

func TestUsers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.mgr.userParams = &users.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}
	const pw = "s3cret-horse-battery"
	if err := e.mgr.AddUser(ctx, "alice", []byte(pw)); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.AddUser(ctx, "alice", []byte("x")); !errors.Is(err, api.ErrConflict) {
		t.Errorf("second add: %v, want ErrConflict", err)
	}
	u, err := e.st.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := users.Verify(u.Hash, []byte(pw)); !ok || err != nil {
		t.Errorf("stored hash does not verify the password: %v %v", ok, err)
	}
	if err := e.mgr.SetPassword(ctx, "alice", []byte("new-one")); err != nil {
		t.Fatal(err)
	}
	u2, _ := e.st.User(ctx, "alice")
	if ok, _ := users.Verify(u2.Hash, []byte("new-one")); !ok || !u2.Created.Equal(u.Created) {
		t.Errorf("after passwd: verifies %v, created %v (was %v)", ok, u2.Created, u.Created)
	}
	if ok, _ := users.Verify(u2.Hash, []byte(pw)); ok {
		t.Error("old password still verifies")
	}
	for _, bad := range []struct {
		name, pw string
		want     error
	}{{"Bad/Name", "x", api.ErrInvalid}, {"bob", "", api.ErrInvalid}, {"bob", strings.Repeat("x", users.MaxPassword+1), api.ErrInvalid}} {
		if err := e.mgr.AddUser(ctx, bad.name, []byte(bad.pw)); !errors.Is(err, bad.want) {
			t.Errorf("AddUser(%q, %d bytes): %v, want %v", bad.name, len(bad.pw), err, bad.want)
		}
	}
	if err := e.mgr.SetPassword(ctx, "nobody", []byte("x")); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("passwd of a missing user: %v", err)
	}
	list, err := e.mgr.Users(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "alice" {
		t.Errorf("Users: %+v, %v", list, err)
	}
	if err := e.mgr.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.RemoveUser(ctx, "alice"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second rm: %v", err)
	}
	var actions []string
	for _, en := range e.entries(t) {
		actions = append(actions, en.Action+" "+en.Outcome)
	}
	if got := strings.Join(actions, ", "); !strings.HasPrefix(got, "user-add ok, user-add ok, user-add refused, user-passwd ok") {
		t.Errorf("audit: %s", got)
	}
	b, _ := os.ReadFile(e.auditPath)
	for _, secret := range []string{pw, "new-one", "argon2id"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("audit log contains %q", secret)
		}
	}
	// Without an audit record nothing changes.
	e.log.Close()
	if err := e.mgr.AddUser(ctx, "bob", []byte("pw")); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("add without audit: %v, want ErrUnavailable", err)
	}
	if _, err := e.st.User(ctx, "bob"); err == nil {
		t.Error("unaudited add stored the user")
	}
}
