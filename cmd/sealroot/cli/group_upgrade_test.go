package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/wire"
)

// group upgrade says what will happen before it happens, refuses without
// --yes off a terminal, moves a named subset, then the whole group (whose
// plan then names the version); a volatile group switches as a whole.
func TestGroupUpgrade(t *testing.T) {
	const idC = "cccccccc33333333333333333333333333333333333333333333333333333333"
	const idD = "dddddddd44444444444444444444444444444444444444444444444444444444"
	var more []*store.Machine
	for _, m := range []struct{ id, name string }{{idB, "w2"}, {idC, "w3"}, {idD, "k1"}} {
		more = append(more, &store.Machine{ID: m.id, Name: m.name, State: store.StateApproved, Policy: store.PolicyPinned,
			Root: wire.RootPlan{Kind: wire.RootNone}})
	}
	dir, sock := realServer(t, more...)
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("v1\n"), 0o644)
	r := run(t, sock, "", "image", "import", "app", src)
	wantRun(t, r, 0, "imported app@v1 sha256:")
	v1 := strings.Fields(strings.TrimPrefix(r.stdout, "imported app@v1 sha256:"))[0]
	images, err := image.Open(image.Config{Dir: filepath.Join(dir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	vols, err := volume.New(volume.Config{Dir: filepath.Join(dir, "volumes"), Bases: images})
	if err != nil {
		t.Fatal(err)
	}
	wantRun(t, run(t, sock, "", "group", "set-root", "workers", "--kind", "iscsi", "--image", "app"), 0, "root of group workers")
	wantRun(t, run(t, sock, "", "group", "set-root", "kiosk", "--kind", "volatile", "--image", "app@v1"), 0, "root of group kiosk")
	for _, m := range [][2]string{{"w2", "workers"}, {"w3", "workers"}, {"k1", "kiosk"}} {
		wantRun(t, run(t, sock, "", "machine", "set-group", m[0], m[1]), 0, "is in group "+m[1])
	}
	for _, id := range []string{idB, idC} {
		v, err := vols.Create(context.Background(), id, v1)
		if err != nil {
			t.Fatal(err)
		}
		v.Close()
	}
	os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("v2\n"), 0o644)
	r = run(t, sock, "", "image", "import", "app", src)
	wantRun(t, r, 0, "imported app@v2 sha256:")
	v2 := strings.Fields(strings.TrimPrefix(r.stdout, "imported app@v2 sha256:"))[0]
	base := func(id string) string {
		meta, err := vols.Meta(id)
		if err != nil {
			t.Fatal(err)
		}
		return meta.Base
	}

	// Without --yes and without a terminal: the plan, then a refusal.
	r = run(t, sock, "", "group", "upgrade", "workers", "--machines", "w3")
	wantRun(t, r, 2, "pass --yes")
	for _, want := range []string{"upgrading group workers to app@v2 will:",
		"cccccccc3333: start its root afresh on app@v2; its root on app@v1 is kept as snapshot before-app-v1",
		"leave 1 other members on their versions", "keep the group's root: iscsi image=app"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan %q lacks %q", r.stdout, want)
		}
	}
	if base(idC) != v1 {
		t.Fatal("an unconfirmed upgrade moved w3")
	}
	wantRun(t, run(t, sock, "", "group", "upgrade", "workers", "--canary", "1", "--machines", "w2", "--yes"), 1, "not both")
	wantRun(t, run(t, sock, "", "group", "upgrade", "workers", "--machines", "k1", "--yes"), 1, "not in group workers")
	wantRun(t, run(t, sock, "", "group", "upgrade", "workers", "--to", "other", "--yes"), 1, "")

	// The subset: w3 moves, w2 stays, the plan stays.
	wantRun(t, run(t, sock, "", "group", "upgrade", "workers", "--machines", "w3", "--yes"), 0,
		"cccccccc3333: root moved from app@v1 to app@v2")
	if base(idC) != v2 || base(idB) != v1 {
		t.Fatalf("after the subset: w2 on %.12s, w3 on %.12s; want v1, v2", base(idB), base(idC))
	}
	// The whole group: w2 moves, w3 is already there, the plan names v2.
	r = run(t, sock, "", "group", "upgrade", "workers", "--yes")
	for _, want := range []string{"bbbbbbbb2222: start its root afresh on app@v2", "cccccccc3333: leave it as it is: already on app@v2",
		"set the group's root to: iscsi image=app@v2", "bbbbbbbb2222: root moved from app@v1 to app@v2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("group upgrade output %q lacks %q", r.stdout, want)
		}
	}
	if base(idB) != v2 {
		t.Fatalf("w2 on %.12s after the full upgrade, want v2", base(idB))
	}
	wantRun(t, run(t, sock, "", "machine", "snapshots", "w2"), 0, "before-app-v1")

	// A volatile group switches as a whole at the next boot.
	wantRun(t, run(t, sock, "", "group", "upgrade", "kiosk", "--canary", "1", "--yes"), 1, "volatile root")
	r = run(t, sock, "", "group", "upgrade", "kiosk", "--yes")
	wantRun(t, r, 0, "volatile: every member boots app@v2 from its next boot")
	if !strings.Contains(r.stdout, "dddddddd4444: leave it as it is: volatile root") {
		t.Errorf("volatile plan %q does not say the member switches at its next boot", r.stdout)
	}
	wantRun(t, run(t, sock, "", "group", "list"), 0, "kiosk    volatile image=app@v2")
}
