package attest_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealroot/sealroot/agent/provision"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// managerFiles stands for the env's machine manager, which newEnv
// creates after the Config mods run.
type managerFiles struct{ attest.Files }

// withFiles serves files from the env's machine manager.
func withFiles(cfg *attest.Config) { cfg.Files = managerFiles{} }

// joinGroup puts the machine in group, creating it with a "none" root.
func (e *testEnv) joinGroup(t *testing.T, id, group string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.db.Group(ctx, group); err != nil {
		if err := e.db.PutGroup(ctx, &store.Group{Name: group, Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.db.UpdateMachine(ctx, id, func(m *store.Machine) error { m.Group = group; return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestFilesAndSecretsReachTheRoot: two machines of a group attest for
// real; each credential carries the group's files rendered for it, the
// machine's own file over the group's, and its secret; the agent's
// provisioning puts them into a root and a secrets tmpfs directory.
func TestFilesAndSecretsReachTheRoot(t *testing.T) {
	e := newEnv(t, withFiles)
	ctx := context.Background()
	lab := api.FileOwner{Group: "lab"}
	if err := e.db.PutGroup(ctx, &store.Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []api.File{
		{Path: "/etc/motd", Mode: 0o644, Content: []byte("lab\n")},
		{Path: "/etc/app/node.conf", Mode: 0o640, GID: 7, Template: true, Content: []byte("name={{.Name}} group={{.Group}}\n")},
	} {
		if err := e.mgr.SetFile(ctx, lab, f); err != nil {
			t.Fatalf("SetFile: %v", err)
		}
	}
	for _, tc := range []struct {
		name, motd string
		motdMode   os.FileMode
		secret     string
	}{
		{"node-1", "lab\n", 0o644, "tok-node-1-VALUE"},
		{"node-2", "node-2's own\n", 0o600, ""},
	} {
		// One simulator at a time: each machine in its own subtest.
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, defaultSpec)
			e.enrollAndApprove(t, m, tc.name)
			e.joinGroup(t, m.id, "lab")
			if tc.secret != "" {
				if err := e.mgr.SetSecret(ctx, tc.name, "api-token", []byte(tc.secret)); err != nil {
					t.Fatal(err)
				}
			} else {
				own := api.File{Path: "/etc/motd", Mode: 0o600, Content: []byte(tc.motd)}
				if err := e.mgr.SetFile(ctx, api.FileOwner{Machine: tc.name}, own); err != nil {
					t.Fatalf("SetFile: %v", err)
				}
			}
			res, err := attestOnce(t, e.client(t, m.dev))
			if err != nil {
				t.Fatalf("attest: %v", err)
			}
			newRoot, run := t.TempDir(), t.TempDir()
			secrets := filepath.Join(run, "sealroot", "secrets")
			if err := provision.Run(provision.Config{SecretsDir: secrets}, newRoot, res.Payload); err != nil {
				t.Fatalf("provision: %v", err)
			}
			got, _ := os.ReadFile(filepath.Join(newRoot, "etc/app/node.conf"))
			if want := fmt.Sprintf("name=%s group=lab\n", tc.name); string(got) != want {
				t.Errorf("node.conf = %q, want %q", got, want)
			}
			fi, err := os.Stat(filepath.Join(newRoot, "etc/motd"))
			got, _ = os.ReadFile(filepath.Join(newRoot, "etc/motd"))
			if err != nil || string(got) != tc.motd || fi.Mode() != tc.motdMode {
				t.Errorf("motd = %q (%v), want %q %v", got, err, tc.motd, tc.motdMode)
			}
			got, err = os.ReadFile(filepath.Join(secrets, "api-token"))
			if tc.secret != "" && string(got) != tc.secret {
				t.Errorf("secret file = %q, %v; want the operator's value", got, err)
			}
			if tc.secret == "" && err == nil {
				t.Errorf("got another machine's secret")
			}
		})
	}
	raw, _ := os.ReadFile(e.auditPath)
	if bytes.Contains(raw, []byte("tok-node-1-VALUE")) {
		t.Error("secret value appears in the audit log")
	}
	if !bytes.Contains(raw, []byte(`"files-load"`)) {
		t.Error("file release not audited")
	}
}

// TestFilesOverLimitRefuseRelease: a group's 1 MiB of files plus the
// machine's own exceed what one release may carry: the release is
// refused by check "files", with the reason in the audit trail.
func TestFilesOverLimitRefuseRelease(t *testing.T) {
	e := newEnv(t, withFiles)
	ctx := context.Background()
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-1")
	e.joinGroup(t, m.id, "lab")
	big := bytes.Repeat([]byte("x"), wire.MaxFileSize)
	for i := range wire.MaxFilesTotal / wire.MaxFileSize {
		if err := e.mgr.SetFile(ctx, api.FileOwner{Group: "lab"}, api.File{Path: fmt.Sprintf("/big/%02d", i), Content: big}); err != nil {
			t.Fatalf("SetFile %d: %v", i, err)
		}
	}
	if err := e.mgr.SetFile(ctx, api.FileOwner{Machine: "node-1"}, api.File{Path: "/etc/own", Content: []byte("one byte too many")}); err != nil {
		t.Fatalf("SetFile: %v", err)
	}
	_, err := attestOnce(t, e.client(t, m.dev))
	e.wantRefused(t, err, m.id, "files")

	// At the limit exactly, 1 MiB of files travels in the credential.
	if err := e.mgr.DeleteFile(ctx, api.FileOwner{Machine: "node-1"}, "/etc/own"); err != nil {
		t.Fatal(err)
	}
	res, err := attestOnce(t, e.client(t, m.dev))
	if err != nil {
		t.Fatalf("attest with 1 MiB of files: %v", err)
	}
	if n := len(res.Payload.Files); n != wire.MaxFilesTotal/wire.MaxFileSize {
		t.Errorf("payload carries %d files, want %d", n, wire.MaxFilesTotal/wire.MaxFileSize)
	}
}
