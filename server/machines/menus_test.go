package machines

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// TestSetMenu: menus of machines and groups are checked (images exist, a
// volatile root, a default among the entries, bounds), stored with a new
// machine Version, shown, kept by a group root change and removed.
func TestSetMenu(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4")
	e := newEnv(t)
	ctx := context.Background()
	images, err := image.Open(image.Config{Dir: t.TempDir(), Logger: testenv.Logger(t, "", hclog.Debug)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ims, _ := images.List()
		for _, im := range ims {
			images.Remove(im.Name)
		}
		images.GC(nil)
	})
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "hostname"), []byte("x\n"), 0o644)
	for _, name := range []string{"debian", "alpine"} {
		if _, err := images.Import(ctx, name, src, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.mgr.images = images
	e.add(t, idA, "ws-1", store.StateApproved, false)
	volatile := wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{wire.ImageParam: "debian"}}
	if _, err := e.mgr.SetRoot(ctx, "ws-1", volatile); err != nil {
		t.Fatal(err)
	}
	ws1 := api.FileOwner{Machine: "ws-1"}

	for _, tc := range []struct {
		name string
		menu api.Menu
		want error
	}{
		{"empty", api.Menu{}, api.ErrInvalid},
		{"unknown_image", api.Menu{Images: []string{"debian", "nope"}}, api.ErrNotFound},
		{"image_twice", api.Menu{Images: []string{"debian", "debian"}}, api.ErrInvalid},
		{"default_not_an_entry", api.Menu{Images: []string{"debian", "alpine"}, Default: "image:nope"}, api.ErrInvalid},
		{"local_disk_default_not_offered", api.Menu{Images: []string{"debian"}, Default: wire.EntryLocalDiskID}, api.ErrInvalid},
		{"timeout_too_long", api.Menu{Images: []string{"debian"}, TimeoutMillis: 2 * 3600 * 1000}, api.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.mgr.SetMenu(ctx, ws1, tc.menu); !errors.Is(err, tc.want) {
				t.Fatalf("SetMenu(%+v) = %v, want %v", tc.menu, err, tc.want)
			}
		})
	}

	before, _ := e.st.Machine(ctx, idA)
	got, err := e.mgr.SetMenu(ctx, ws1, api.Menu{Images: []string{"debian", "alpine"}, LocalDisk: true})
	if err != nil {
		t.Fatalf("SetMenu: %v", err)
	}
	if got.Default != "image:debian" || got.TimeoutMillis != DefaultMenuTimeout.Milliseconds() {
		t.Fatalf("SetMenu = %+v, want default image:debian after %v", got, DefaultMenuTimeout)
	}
	after, _ := e.st.Machine(ctx, idA)
	if after.Version == before.Version || after.Menu == nil || after.Menu.Timeout != 10*time.Second {
		t.Fatalf("stored %+v version %d -> %d, want the menu and a new version", after.Menu, before.Version, after.Version)
	}
	if shown, err := e.mgr.Menu(ctx, ws1); err != nil || len(shown.Images) != 2 || !shown.LocalDisk {
		t.Fatalf("Menu = %+v, %v", shown, err)
	}

	// A persistent root cannot take image entries.
	e.add(t, idC, "ws-2", store.StateApproved, false)
	iscsi := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "debian"}}
	if _, err := e.mgr.SetRoot(ctx, "ws-2", iscsi); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.SetMenu(ctx, api.FileOwner{Machine: "ws-2"}, api.Menu{Images: []string{"debian", "alpine"}}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("SetMenu on an iscsi root = %v, want ErrConflict", err)
	}

	// A group's menu survives a change of the group's root.
	lab := api.FileOwner{Group: "lab"}
	if _, err := e.mgr.SetGroupRoot(ctx, "lab", volatile); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.SetMenu(ctx, lab, api.Menu{Images: []string{"alpine", "debian"}, Default: "image:debian", TimeoutMillis: 3000}); err != nil {
		t.Fatal(err)
	}
	alpine := wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{wire.ImageParam: "alpine"}}
	if _, err := e.mgr.SetGroupRoot(ctx, "lab", alpine); err != nil {
		t.Fatal(err)
	}
	if m, err := e.mgr.Menu(ctx, lab); err != nil || m.Default != "image:debian" {
		t.Fatalf("group menu after set-root = %+v, %v", m, err)
	}

	for _, owner := range []api.FileOwner{ws1, lab} {
		if err := e.mgr.DeleteMenu(ctx, owner); err != nil {
			t.Fatal(err)
		}
		if _, err := e.mgr.Menu(ctx, owner); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("Menu after rm = %v, want ErrNotFound", err)
		}
	}
}
