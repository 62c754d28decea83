package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

func TestFiles(t *testing.T) {
	svc := apitest.NewService(t, testMachines()...)
	sock := apitest.Serve(t, svc, api.WithFiles(svc))
	ctx := context.Background()
	if err := svc.Store.PutGroup(ctx, &store.Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "app.conf")
	os.WriteFile(conf, []byte("host={{.Name}}\n"), 0o600)

	for _, args := range [][]string{
		{"group", "files", "set", "lab", "/etc/app.conf", conf, "--template", "--mode", "0640", "--owner", "0:7"},
		{"group", "files", "set", "lab", "/etc/motd"},
		{"machine", "files", "set", "web1", "/etc/motd", "-", "--mode", "600"},
	} {
		if r := run(t, sock, "hello\n", args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	r := run(t, sock, "", "group", "files", "list", "lab")
	want := "" +
		"PATH           MODE  OWNER  SIZE  TEMPLATE\n" +
		"/etc/app.conf  0640  0:7    15    yes\n" +
		"/etc/motd      0644  0:0    6     -\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("group files list = %d %q\nwant %q", r.code, r.stdout, want)
	}
	r = run(t, sock, "", "--json", "machine", "files", "list", "web1")
	var fs []api.File
	if err := json.Unmarshal([]byte(r.stdout), &fs); err != nil || len(fs) != 1 || fs[0].Mode != 0o600 || fs[0].Path != "/etc/motd" {
		t.Errorf("machine files list --json = %q (%v)", r.stdout, err)
	}
	if r := run(t, sock, "", "machine", "files", "rm", "web1", "/etc/motd"); r.code != 0 || !strings.Contains(r.stdout, "removed file /etc/motd of machine web1") {
		t.Errorf("machine files rm = %d %q %q", r.code, r.stdout, r.stderr)
	}

	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, make([]byte, wire.MaxFileSize+1), 0o600)
	refused := []struct {
		name string
		args []string
		want string
	}{
		{"dotdot", []string{"group", "files", "set", "lab", "/etc/../../x"}, "not clean"},
		{"relative", []string{"machine", "files", "set", "web1", "etc/x"}, "not absolute"},
		{"huge", []string{"machine", "files", "set", "web1", "/x", big}, "larger than 65536"},
		{"mode", []string{"machine", "files", "set", "web1", "/x", "--mode", "99"}, "--mode"},
		{"owner", []string{"machine", "files", "set", "web1", "/x", "--owner", "root"}, "numeric UID:GID"},
		{"template", []string{"group", "files", "set", "lab", "/x", "--template"}, "sealroot: invalid: template /x"},
		{"no_group", []string{"group", "files", "list", "nosuch"}, "not found"},
		{"rm_missing", []string{"machine", "files", "rm", "web1", "/nosuch"}, "not found"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			stdin := ""
			if tt.name == "template" {
				stdin = "{{printf \"%d\" 1}}"
			}
			r := run(t, sock, stdin, tt.args...)
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d stderr %q, want 1 and %q", r.code, r.stderr, tt.want)
			}
		})
	}
}
