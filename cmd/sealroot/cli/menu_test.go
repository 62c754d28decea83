package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

func TestMenu(t *testing.T) {
	svc := apitest.NewService(t, testMachines()...)
	sock := apitest.Serve(t, svc, api.WithMenus(svc))
	if err := svc.Store.PutGroup(context.Background(), &store.Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	r := run(t, sock, "", "group", "menu", "set", "lab", "--local-disk", "--timeout", "3s")
	if r.code != 0 || r.stdout != "menu of group lab: local disk; default local-disk after 3s\n" {
		t.Fatalf("group menu set = %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, sock, "", "--json", "group", "menu", "show", "lab")
	var m api.Menu
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || !m.LocalDisk || m.Default != "local-disk" || m.TimeoutMillis != 3000 {
		t.Fatalf("group menu show --json = %q (%v)", r.stdout, err)
	}
	if r := run(t, sock, "", "machine", "menu", "set", "web1", "--local-disk"); r.code != 0 {
		t.Fatalf("machine menu set = %d %q", r.code, r.stderr)
	}
	if r := run(t, sock, "", "machine", "show", "web1"); !strings.Contains(r.stdout, "Menu:           local disk; default local-disk after 10s\n") {
		t.Errorf("machine show has no menu line:\n%s", r.stdout)
	}
	if r := run(t, sock, "", "group", "menu", "rm", "lab"); r.code != 0 || r.stdout != "removed the menu of group lab\n" {
		t.Fatalf("group menu rm = %d %q %q", r.code, r.stdout, r.stderr)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no_menu", []string{"group", "menu", "show", "lab"}, "has no menu"},
		{"empty", []string{"machine", "menu", "set", "web1"}, "needs an image or the local disk"},
		{"long_timeout", []string{"machine", "menu", "set", "web1", "--local-disk", "--timeout", "5m"}, "want 1ms to 1m0s"},
		{"zero_timeout", []string{"machine", "menu", "set", "web1", "--local-disk", "--timeout", "0s"}, "want a positive duration"},
		{"default_not_entry", []string{"machine", "menu", "set", "web1", "--local-disk", "--default", "debian"}, "is not a menu entry"},
		{"unknown_machine", []string{"machine", "menu", "show", "nosuch"}, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, sock, "", tc.args...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("%v = %d %q, want exit 1 and %q", tc.args, r.code, r.stderr, tc.want)
			}
		})
	}
}
