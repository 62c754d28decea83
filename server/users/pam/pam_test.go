//go:build linux && cgo

package pam_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/users"
	"github.com/sealroot/sealroot/server/users/pam"
	"github.com/sealroot/sealroot/test/testenv"
)

// pamUser creates a local account with password pw for the test (pam_unix
// reads /etc/shadow) and removes it at cleanup.
func pamUser(t *testing.T, pw string) string {
	t.Helper()
	testenv.RequireRoot(t, "creates a local account for pam_unix")
	useradd, chpasswd, userdel := testenv.LookTool(t, "useradd"), testenv.LookTool(t, "chpasswd"), testenv.LookTool(t, "userdel")
	name := fmt.Sprintf("srpam%d", os.Getpid())
	if out, err := exec.Command(useradd, "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(userdel, name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	cmd := exec.Command(chpasswd)
	cmd.Stdin = strings.NewReader(name + ":" + pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}
	return name
}

// pamService writes a PAM service using pam_unix into a directory of the
// test's own and returns its config.
func pamService(t *testing.T) pam.Config {
	t.Helper()
	dir := t.TempDir()
	conf := "auth required pam_unix.so\naccount required pam_unix.so\n"
	if err := os.WriteFile(filepath.Join(dir, "sealroot-test"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return pam.Config{Service: "sealroot-test", ConfDir: dir}
}

// TestPAMVerifier: the site's PAM stack (here pam_unix over a local
// account) decides: the right password passes, a wrong one and an unknown
// user are refused with PAM's reason, never the password.
func TestPAMVerifier(t *testing.T) {
	const pw = "Pam-Secret-7"
	name := pamUser(t, pw)
	v, err := pam.New(pamService(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if refused, err := v.Verify(ctx, name, []byte(pw)); err != nil || refused != "" {
		t.Fatalf("right password = %q, %v; want accepted", refused, err)
	}
	for _, tt := range []struct{ name, user, pw string }{
		{"wrong_password", name, "Wrong-8"},
		{"unknown_user", name + "x", pw},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refused, err := v.Verify(ctx, tt.user, []byte(tt.pw))
			if err != nil || !strings.HasPrefix(refused, "pam: ") || strings.Contains(refused, tt.pw) {
				t.Fatalf("Verify = %q, %v; want a PAM refusal without the password", refused, err)
			}
		})
	}
	// Through the Checker: limits and audit on top, the password in no
	// record.
	var recs []users.Record
	chk, err := users.NewChecker(users.CheckerConfig{Verifier: v, Audit: func(r users.Record) error { recs = append(recs, r); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := chk.Login(ctx, "m1", name, []byte("Wrong-8")); !errors.Is(err, users.ErrLoginFailed) {
		t.Fatalf("checker, wrong password: %v", err)
	}
	if err := chk.Login(ctx, "m1", name, []byte(pw)); err != nil {
		t.Fatalf("checker, right password: %v", err)
	}
	if len(recs) != 2 || recs[0].Outcome != "refused" || recs[1].Outcome != "ok" {
		t.Fatalf("audit records %+v", recs)
	}
	for _, r := range recs {
		if strings.Contains(fmt.Sprint(r), pw) || strings.Contains(fmt.Sprint(r), "Wrong-8") {
			t.Fatalf("audit record holds a password: %+v", r)
		}
	}
}

// TestPAMServiceMissing: a service PAM cannot load is an error (the login
// cannot be decided), not a refusal.
func TestPAMServiceMissing(t *testing.T) {
	v, err := pam.New(pam.Config{Service: "sealroot-none", ConfDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	refused, err := v.Verify(context.Background(), "root", []byte("x"))
	if err == nil || refused != "" {
		t.Fatalf("missing service = %q, %v; want an error", refused, err)
	}
}
