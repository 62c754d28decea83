package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/volume"
)

// TestUserRootLifecycleCommands: user snapshot, reset, rollback and
// snapshots work on a user's root volume in a real daemon's storage, as
// the machine commands do on a machine's.
func TestUserRootLifecycleCommands(t *testing.T) {
	dir, sock := realServer(t)
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	if err := os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("desk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, sock, "", "image", "import", "tiny", src)
	wantRun(t, r, 0, "imported tiny@v1 sha256:")
	digest := strings.Fields(strings.TrimPrefix(r.stdout, "imported tiny@v1 sha256:"))[0]
	images, err := image.Open(image.Config{Dir: filepath.Join(dir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { images.Remove("tiny"); images.GC(nil) })

	wantRun(t, run(t, sock, "", "user", "reset", "--yes", "alice"), 1, "volume not found")
	wantRun(t, run(t, sock, "", "user", "snapshot", "alice", "s1"), 1, "not found")
	// Alice's first login makes her root's volume; do that here.
	vols, err := volume.New(volume.Config{Dir: filepath.Join(dir, "volumes"), Bases: images})
	if err != nil {
		t.Fatal(err)
	}
	key := roots.UserRootKey("alice")
	v, err := vols.Create(context.Background(), key, digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt([]byte("alice's!"), 0); err != nil {
		t.Fatal(err)
	}
	v.Close()
	read := func() string {
		t.Helper()
		v, err := vols.Open(key, digest)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		b := make([]byte, 8)
		if _, err := v.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	wantRun(t, run(t, sock, "", "user", "snapshot", "alice", "s1"), 0, "saved the root of user alice as snapshot s1")
	wantRun(t, run(t, sock, "", "user", "snapshot", "alice", "s1"), 1, "already exists")
	wantRun(t, run(t, sock, "", "user", "snapshots", "alice"), 0, "s1")
	if r := run(t, sock, "", "user", "snapshots", "alice"); !strings.Contains(r.stdout, "tiny@v1") {
		t.Errorf("user snapshots = %q, want the base image version tiny@v1", r.stdout)
	}
	wantRun(t, run(t, sock, "", "user", "reset", "alice"), 2, "not a terminal to ask on; pass --yes")
	if got := read(); got != "alice's!" {
		t.Fatal("reset without --yes dropped the write")
	}
	wantRun(t, run(t, sock, "", "user", "reset", "--yes", "alice"), 0, "reset the root of user alice")
	if got := read(); got == "alice's!" {
		t.Fatal("reset kept the write")
	}
	wantRun(t, run(t, sock, "", "user", "snapshots", "alice"), 0, "s1") // reset keeps snapshots
	wantRun(t, run(t, sock, "", "user", "rollback", "alice", "s1"), 2, "pass --yes")
	wantRun(t, run(t, sock, "", "user", "rollback", "--yes", "alice", "s1"), 0, "rolled the root of user alice back to snapshot s1")
	if got := read(); got != "alice's!" {
		t.Fatalf("after rollback the root starts %q, want the snapshot's write", got)
	}
	wantRun(t, run(t, sock, "", "user", "rollback", "--yes", "alice", "nope"), 1, "not found")
	// Another user's root is another volume.
	wantRun(t, run(t, sock, "", "user", "snapshots", "bob"), 1, "not found")
	wantRun(t, run(t, sock, "", "user", "snapshot", "Bad/Name", "s1"), 1, "invalid user name")
	if _, err := vols.Meta(roots.UserRootKey("bob")); err == nil {
		t.Fatal("bob has a volume")
	}
}
