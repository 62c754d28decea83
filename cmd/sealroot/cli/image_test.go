package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/wire"
)

// realServer runs a real sealroot daemon (with a plain iSCSI listener) in
// a temporary state directory holding one approved machine, web1 (idA).
func realServer(t *testing.T) (dir, socket string) {
	t.Helper()
	testenv.RequireTools(t, "mkfs.ext4", "debugfs")
	dir, err := os.MkdirTemp("", "sealroot-cli-") // short: the socket path must fit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := pki.Init(server.PKIDir(dir), pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.CreateMachine(context.Background(), &store.Machine{ID: idA, Name: "web1", State: store.StateApproved,
		Policy: store.PolicyPinned, Root: wire.RootPlan{Kind: wire.RootNone}})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{StateDir: dir, AttestAddr: "127.0.0.1:0", AdminSocket: filepath.Join(dir, "admin.sock"),
		ISCSI: &server.ISCSIConfig{Listen: "127.0.0.1:0"}}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	if _, err := srv.Listen(); err != nil {
		cancel()
		srv.Close()
		t.Fatalf("Listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	c := client.New(cfg.AdminSocket)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := c.Images(ctx); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("daemon does not answer: %v", err)
		}
	}
	return dir, cfg.AdminSocket
}

func wantRun(t *testing.T, r result, code int, stdout string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout+r.stderr, stdout) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, code, stdout)
	}
}

func TestImageAndVolumeCommands(t *testing.T) {
	dir, sock := realServer(t)
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	if err := os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("web1\n"), 0o644); err != nil {
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

	wantRun(t, run(t, sock, "", "image", "list"), 0, "tiny@v1  yes     sha256:"+digest[:12])
	wantRun(t, run(t, sock, "", "image", "import", "bad/name", src), 1, "invalid")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--kind", "iscsi"), 2, "needs --image")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--image", "missing"), 1, "not found")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--kind", "floppy", "--image", "tiny"), 1, "root kind")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--image", "tiny"), 0, "root of aaaaaaaa1111 web1: iscsi tiny")
	m, err := client.New(sock).Machine(context.Background(), "web1")
	if err != nil || m.Root.Kind != wire.RootISCSI || m.Root.Params[wire.ImageParam] != "tiny" {
		t.Fatalf("machine root = %+v, %v; want iscsi tiny", m.Root, err)
	}

	wantRun(t, run(t, sock, "", "machine", "reset", "web1"), 1, "volume not found")
	// The machine's first boot makes its volume; do that here.
	vols, err := volume.New(volume.Config{Dir: filepath.Join(dir, "volumes"), Bases: images})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vols.Create(context.Background(), idA, digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt([]byte("changed!"), 0); err != nil {
		t.Fatal(err)
	}
	v.Close()
	wantRun(t, run(t, sock, "", "machine", "snapshot", "web1", "s1"), 0, "saved the root of web1 as snapshot s1")
	wantRun(t, run(t, sock, "", "machine", "snapshot", "web1", "s1"), 1, "already exists")
	wantRun(t, run(t, sock, "", "machine", "reset", "web1"), 0, "reset the root of web1")
	if got := readVolume(t, vols, digest); got == "changed!" {
		t.Fatal("reset kept the write")
	}
	wantRun(t, run(t, sock, "", "machine", "rollback", "web1", "s1"), 0, "rolled the root of web1 back to snapshot s1")
	if got := readVolume(t, vols, digest); got != "changed!" {
		t.Fatalf("after rollback the volume starts %q, want the snapshot's write", got)
	}
	wantRun(t, run(t, sock, "", "machine", "rollback", "web1", "nope"), 1, "not found")

	// A second import is tiny@v2; the machine's volume keeps v1 until it
	// is upgraded, which keeps the v1 root as a snapshot.
	os.WriteFile(filepath.Join(src, "etc", "motd"), []byte("v2\n"), 0o644)
	r = run(t, sock, "", "image", "import", "tiny", src)
	wantRun(t, r, 0, "imported tiny@v2 sha256:")
	digest2 := strings.Fields(strings.TrimPrefix(r.stdout, "imported tiny@v2 sha256:"))[0]
	wantRun(t, run(t, sock, "", "image", "list"), 0, "roots")
	wantRun(t, run(t, sock, "", "image", "rm", "tiny@v1"), 1, "base of machines' roots")
	wantRun(t, run(t, sock, "", "image", "rm", "tiny@v2"), 1, "is the root of machine") // the plan follows the latest
	wantRun(t, run(t, sock, "", "machine", "upgrade", "web1"), 0, "root moved from tiny@v1 to tiny@v2; the old root is snapshot before-tiny-v1")
	wantRun(t, run(t, sock, "", "machine", "upgrade", "web1"), 0, "already on tiny@v2")
	if got := readVolume(t, vols, digest2); got == "changed!" {
		t.Fatal("upgraded volume kept the old write")
	}
	wantRun(t, run(t, sock, "", "machine", "snapshots", "web1"), 0, "before-tiny-v1")
	wantRun(t, run(t, sock, "", "machine", "rollback", "web1", "before-tiny-v1"), 0, "rolled the root of web1 back")
	if got := readVolume(t, vols, digest); got != "changed!" {
		t.Fatalf("after rolling back the upgrade the volume starts %q, want the v1 root's write", got)
	}
	wantRun(t, run(t, sock, "", "machine", "snapshot-rm", "web1", "before-tiny-v1"), 0, "deleted snapshot before-tiny-v1")

	wantRun(t, run(t, sock, "", "image", "rm", "tiny"), 1, "is the root of machine")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--kind", "none"), 0, "root of aaaaaaaa1111 web1: none")
	wantRun(t, run(t, sock, "", "image", "rm", "tiny"), 1, "base of machines' roots") // the volume still uses v1
	wantRun(t, run(t, sock, "", "machine", "delete-root", "web1"), 0, "deleted the root of web1")
	wantRun(t, run(t, sock, "", "machine", "delete-root", "web1"), 1, "no root on the server")
	wantRun(t, run(t, sock, "", "image", "rm", "tiny"), 0, "removed image tiny@v1")
	wantRun(t, run(t, sock, "", "image", "rm", "tiny"), 1, "not found")
	wantRun(t, run(t, sock, "", "image", "gc"), 0, "removed base sha256:"+digest)
	if r := run(t, sock, "", "--json", "image", "list"); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("image list after rm = %q, want []", r.stdout)
	}
}

func readVolume(t *testing.T, vols *volume.Manager, digest string) string {
	t.Helper()
	v, err := vols.Open(idA, digest)
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

func TestGroupCommands(t *testing.T) {
	dir, sock := realServer(t)
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	if err := os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("kiosk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantRun(t, run(t, sock, "", "image", "import", "kiosk", src), 0, "imported kiosk")
	images, err := image.Open(image.Config{Dir: filepath.Join(dir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { images.Remove("kiosk"); images.GC(nil) })

	wantRun(t, run(t, sock, "", "group", "set-root", "kiosks"), 2, "needs --image")
	wantRun(t, run(t, sock, "", "group", "set-root", "../x", "--image", "kiosk"), 1, "group name")
	wantRun(t, run(t, sock, "", "group", "set-root", "kiosks", "--image", "missing"), 1, "not found")
	wantRun(t, run(t, sock, "", "group", "set-root", "kiosks", "--kind", "nfs", "--image", "kiosk", "--via", "iscsi"), 2, "--via is for --kind volatile")
	wantRun(t, run(t, sock, "", "group", "set-root", "kiosks", "--image", "kiosk", "--via", "floppy"), 1, "via nfs or iscsi")
	wantRun(t, run(t, sock, "", "group", "set-root", "kiosks", "--image", "kiosk", "--via", "iscsi"), 0, "root of group kiosks: volatile image=kiosk via=iscsi")
	wantRun(t, run(t, sock, "", "group", "set-root", "kiosks", "--image", "kiosk"), 0, "root of group kiosks: volatile image=kiosk")
	wantRun(t, run(t, sock, "", "group", "list"), 0, "kiosks  volatile image=kiosk")
	wantRun(t, run(t, sock, "", "machine", "set-group", "web1", "nope"), 1, "not found")
	wantRun(t, run(t, sock, "", "machine", "set-group", "web1", "kiosks"), 0, "web1 is in group kiosks")
	m, err := client.New(sock).Machine(context.Background(), "web1")
	if err != nil || m.Group != "kiosks" {
		t.Fatalf("machine = %+v, %v; want group kiosks", m, err)
	}
	wantRun(t, run(t, sock, "", "machine", "show", "web1"), 0, "Root:           that of group kiosks")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--kind", "nfs", "--image", "kiosk"), 1, "is in group kiosks")
	wantRun(t, run(t, sock, "", "group", "rm", "kiosks"), 1, "group has machines")
	wantRun(t, run(t, sock, "", "image", "rm", "kiosk"), 1, "is the root of group kiosks")
	wantRun(t, run(t, sock, "", "machine", "set-group", "web1", ""), 0, "is in no group; its own root: none")
	wantRun(t, run(t, sock, "", "group", "rm", "kiosks"), 0, "removed group kiosks")
	if r := run(t, sock, "", "--json", "group", "list"); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("group list after rm = %q, want []", r.stdout)
	}
}
