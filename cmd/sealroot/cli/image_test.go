package cli_test

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net/http/httptest"

	"github.com/sealroot/sealroot/server/secrets"

	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/wire"
)

// realServer runs a real sealroot daemon (with a plain iSCSI listener) in
// a temporary state directory holding one approved machine, web1 (idA).
func realServer(t *testing.T, more ...*store.Machine) (dir, socket string) {
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
	for _, m := range more {
		if err == nil {
			err = db.CreateMachine(context.Background(), m)
		}
	}
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{StateDir: dir, AttestAddr: "127.0.0.1:0", AdminSocket: filepath.Join(dir, "admin.sock"),
		ISCSI: &config.ISCSIConfig{Listen: "127.0.0.1:0"}}
	serveDaemon(t, cfg)
	return dir, cfg.AdminSocket
}

// serveDaemon runs the server cfg describes until the test ends and
// returns its bound addresses once its admin API answers.
func serveDaemon(t *testing.T, cfg config.Config) server.Addrs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	addrs, err := srv.Listen()
	if err != nil {
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
		if _, err := c.Machines(ctx); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("daemon does not answer: %v", err)
		}
	}
	return addrs
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
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--kind", "volatile", "--image", "tiny", "--per-user"), 2, "--per-user is for --kind iscsi or nfs")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--kind", "nfs", "--image", "tiny", "--per-user"), 0, "root of aaaaaaaa1111 web1: nfs tiny per-user")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--image", "tiny", "--per-user"), 0, "root of aaaaaaaa1111 web1: iscsi tiny per-user")
	if m, err := client.New(sock).Machine(context.Background(), "web1"); err != nil || m.Root.Params[wire.PerUserParam] != "true" {
		t.Fatalf("machine root = %+v, %v; want per_user=true", m.Root, err)
	}
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--image", "tiny"), 0, "root of aaaaaaaa1111 web1: iscsi tiny")
	m, err := client.New(sock).Machine(context.Background(), "web1")
	if err != nil || m.Root.Kind != wire.RootISCSI || m.Root.Params[wire.ImageParam] != "tiny" {
		t.Fatalf("machine root = %+v, %v; want iscsi tiny", m.Root, err)
	}

	wantRun(t, run(t, sock, "", "machine", "reset", "--yes", "web1"), 1, "volume not found")
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
	wantRun(t, run(t, sock, "", "machine", "reset", "web1"), 2, "not a terminal to ask on; pass --yes") // and nothing done
	if got := readVolume(t, vols, digest); got != "changed!" {
		t.Fatal("reset without --yes dropped the write")
	}
	wantRun(t, run(t, sock, "", "machine", "reset", "--yes", "web1"), 0, "reset the root of web1")
	wantRun(t, run(t, sock, "", "machine", "snapshots", "web1"), 0, "s1") // reset keeps snapshots
	if got := readVolume(t, vols, digest); got == "changed!" {
		t.Fatal("reset kept the write")
	}
	wantRun(t, run(t, sock, "", "machine", "rollback", "--yes", "web1", "s1"), 0, "rolled the root of web1 back to snapshot s1")
	if got := readVolume(t, vols, digest); got != "changed!" {
		t.Fatalf("after rollback the volume starts %q, want the snapshot's write", got)
	}
	wantRun(t, run(t, sock, "", "machine", "rollback", "--yes", "web1", "nope"), 1, "not found")

	// A second import is tiny@v2; the machine's volume keeps v1 until it
	// is upgraded, which keeps the v1 root as a snapshot.
	os.WriteFile(filepath.Join(src, "etc", "motd"), []byte("v2\n"), 0o644)
	r = run(t, sock, "", "image", "import", "tiny", src)
	wantRun(t, r, 0, "imported tiny@v2 sha256:")
	digest2 := strings.Fields(strings.TrimPrefix(r.stdout, "imported tiny@v2 sha256:"))[0]
	wantRun(t, run(t, sock, "", "image", "list"), 0, "roots")
	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "tiny@v1"), 1, "base of machines' roots or snapshots (root of machine aaaaaaaa1111 web1;")
	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "tiny@v2"), 1, "is the root of machine") // the plan follows the latest
	// gc removes nothing and says who keeps each base.
	r = run(t, sock, "", "image", "gc")
	for _, want := range []string{
		"kept base sha256:" + digest[:12] + ": used by image tiny@v1; root of machine aaaaaaaa1111 web1; snapshot s1 of machine aaaaaaaa1111 web1\n",
		"kept base sha256:" + digest2[:12] + ": used by image tiny@v2; machine aaaaaaaa1111 web1\n",
		"0 bases removed, 2 kept",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("image gc output %q lacks %q", r.stdout, want)
		}
	}
	wantRun(t, run(t, sock, "", "machine", "upgrade", "web1"), 0, "root moved from tiny@v1 to tiny@v2; the old root is snapshot before-tiny-v1")
	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "tiny@v1"), 1, "snapshot before-tiny-v1 of machine aaaaaaaa1111 web1")
	wantRun(t, run(t, sock, "", "machine", "upgrade", "web1"), 0, "already on tiny@v2")
	if got := readVolume(t, vols, digest2); got == "changed!" {
		t.Fatal("upgraded volume kept the old write")
	}
	wantRun(t, run(t, sock, "", "machine", "snapshots", "web1"), 0, "before-tiny-v1")
	wantRun(t, run(t, sock, "", "machine", "rollback", "--yes", "web1", "before-tiny-v1"), 0, "rolled the root of web1 back")
	if got := readVolume(t, vols, digest); got != "changed!" {
		t.Fatalf("after rolling back the upgrade the volume starts %q, want the v1 root's write", got)
	}
	wantRun(t, run(t, sock, "", "machine", "snapshot-rm", "--yes", "web1", "before-tiny-v1"), 0, "deleted snapshot before-tiny-v1")

	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "tiny"), 1, "is the root of machine")
	wantRun(t, run(t, sock, "", "machine", "set-root", "web1", "--kind", "none"), 0, "root of aaaaaaaa1111 web1: none")
	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "tiny"), 1, "base of machines' roots") // the volume still uses v1
	wantRun(t, run(t, sock, "", "machine", "delete-root", "--yes", "web1"), 0, "deleted the root of web1")
	wantRun(t, run(t, sock, "", "machine", "delete-root", "--yes", "web1"), 1, "no root on the server")
	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "tiny"), 0, "removed image tiny@v1")
	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "tiny"), 1, "not found")
	wantRun(t, run(t, sock, "", "image", "gc"), 0, "removed base sha256:"+digest[:12])
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
	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "kiosk"), 1, "is the root of group kiosks")
	wantRun(t, run(t, sock, "", "machine", "set-group", "web1", ""), 0, "is in no group; its own root: none")
	wantRun(t, run(t, sock, "", "group", "rm", "kiosks"), 0, "removed group kiosks")
	if r := run(t, sock, "", "--json", "group", "list"); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("group list after rm = %q, want []", r.stdout)
	}
}

// A rollout to a new version moves a canary first, leaves the group's
// plan alone, then moves the rest and pins the group to the version;
// each moved machine keeps its old root as a snapshot on the old base.
func TestImageRollout(t *testing.T) {
	const idC = "cccccccc33333333333333333333333333333333333333333333333333333333"
	const idD = "dddddddd44444444444444444444444444444444444444444444444444444444"
	var more []*store.Machine
	for _, m := range []struct{ id, name string }{{idB, "w2"}, {idC, "w3"}, {idD, "w4"}} {
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
	for _, name := range []string{"w2", "w3", "w4"} {
		wantRun(t, run(t, sock, "", "machine", "set-group", name, "workers"), 0, "is in group workers")
	}
	// w2 and w3 have booted (volumes on v1); w4 has not.
	for _, id := range []string{idB, idC} {
		v, err := vols.Create(context.Background(), id, v1)
		if err != nil {
			t.Fatal(err)
		}
		v.WriteAt([]byte("changed!"), 0)
		v.Close()
	}
	os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("v2\n"), 0o644)
	r = run(t, sock, "", "image", "import", "app", src)
	wantRun(t, r, 0, "imported app@v2 sha256:")
	v2 := strings.Fields(strings.TrimPrefix(r.stdout, "imported app@v2 sha256:"))[0]

	wantRun(t, run(t, sock, "", "image", "rollout", "app@v2"), 2, "--group is required")
	wantRun(t, run(t, sock, "", "image", "rollout", "other@v1", "--group", "workers"), 1, "not a version of app")
	wantRun(t, run(t, sock, "", "image", "rollout", "app@v2", "--group", "workers", "--canary", "1"), 0,
		"bbbbbbbb2222: root moved from app@v1 to app@v2")
	wantRun(t, run(t, sock, "", "group", "list"), 0, "workers  iscsi image=app") // a canary leaves the plan
	metaB, _ := vols.Meta(idB)
	metaC, _ := vols.Meta(idC)
	if metaB.Base != v2 || metaC.Base != v1 {
		t.Fatalf("after the canary: w2 on %.12s, w3 on %.12s; want w2 on v2, w3 on v1", metaB.Base, metaC.Base)
	}
	r = run(t, sock, "", "image", "rollout", "app@v2", "--group", "workers")
	wantRun(t, r, 0, "cccccccc3333: root moved from app@v1 to app@v2")
	for _, want := range []string{"bbbbbbbb2222: not moved to app@v2: already on app@v2", "dddddddd4444: not moved to app@v2: no root yet",
		"group root: iscsi image=app@v2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rollout output %q lacks %q", r.stdout, want)
		}
	}
	// Rolling the canary back returns it to v1 with its change.
	wantRun(t, run(t, sock, "", "machine", "rollback", "--yes", "w2", "before-app-v1"), 0, "rolled the root of w2 back")
	if metaB, _ = vols.Meta(idB); metaB.Base != v1 {
		t.Fatalf("after rollback w2 is on %.12s, want v1", metaB.Base)
	}
	wantRun(t, run(t, sock, "", "image", "rm", "--yes", "app@v1"), 1, "base of machines' roots")

	// Forget deletes the machine's roots unless --keep-root.
	wantRun(t, run(t, sock, "", "machine", "forget", "--yes", "w3"), 0, "its roots and snapshots deleted")
	if _, err := vols.Meta(idC); !errors.Is(err, volume.ErrNotFound) {
		t.Fatalf("w3's volume after forget: %v, want ErrNotFound", err)
	}
	wantRun(t, run(t, sock, "", "machine", "forget", "--yes", "--keep-root", "w2"), 0, "its roots kept on the server")
	if _, err := vols.Meta(idB); err != nil {
		t.Fatalf("w2's volume after forget --keep-root: %v", err)
	}
	wantRun(t, run(t, sock, "", "machine", "forget", "--yes", "w4"), 0, "no roots on the server")
}

// --oci pulls from a registry (in-process, loopback) through the server;
// the same image again adds no version.
func TestImageImportOCI(t *testing.T) {
	_, sock := realServer(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/sealroot/app:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	wantRun(t, run(t, sock, "", "image", "import", "app", "--oci", ref), 0, "imported app@v1 sha256:")
	wantRun(t, run(t, sock, "", "image", "import", "app", "--oci", "docker://"+ref), 0, "imported app@v1 sha256:")
	wantRun(t, run(t, sock, "", "image", "import", "app", "--oci", ref, "/tmp/x"), 2, "want NAME SOURCE, or NAME --oci")
	wantRun(t, run(t, sock, "", "image", "import", "app", "--oci", strings.TrimPrefix(reg.URL, "http://")+"/sealroot/missing:v1"), 1, "pull")
}

// DHCP reservations through the running server, audited, conflicts
// refused.
func TestDHCPReservations(t *testing.T) {
	_, sock := realServer(t)
	wantRun(t, run(t, sock, "", "dhcp", "reserve", "52:54:00:AA:BB:01", "192.0.2.50"), 0, "reserved 192.0.2.50 for 52:54:00:aa:bb:01")
	wantRun(t, run(t, sock, "", "dhcp", "reserve", "52:54:00:aa:bb:02", "192.0.2.50"), 1, "reserved for 52:54:00:aa:bb:01")
	wantRun(t, run(t, sock, "", "dhcp", "reserve", "nope", "192.0.2.51"), 1, "invalid")
	wantRun(t, run(t, sock, "", "dhcp", "reserve", "52:54:00:aa:bb:02", "fe80::1"), 1, "want an IPv4 address")
	wantRun(t, run(t, sock, "", "dhcp", "list"), 0, "52:54:00:aa:bb:01  192.0.2.50")
	wantRun(t, run(t, sock, "", "dhcp", "rm", "52:54:00:aa:bb:01"), 2, "pass --yes")
	wantRun(t, run(t, sock, "", "dhcp", "rm", "--yes", "52:54:00:aa:bb:01"), 0, "removed the reservation")
	wantRun(t, run(t, sock, "", "dhcp", "rm", "--yes", "52:54:00:aa:bb:01"), 1, "not found")
}

// A backup of the running server restores into a fresh state directory
// whose store, keys and records are the server's: the machine's secret
// decrypts with the restored identity; a non-empty target is refused.
func TestBackupRestore(t *testing.T) {
	dir, sock := realServer(t)
	wantRun(t, run(t, sock, "s3cret-value", "secret", "set", "web1", "token"), 0, "")
	wantRun(t, run(t, sock, "", "dhcp", "reserve", "52:54:00:aa:bb:01", "192.0.2.50"), 0, "reserved")
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("b\n"), 0o644)
	wantRun(t, run(t, sock, "", "image", "import", "app", src), 0, "imported app@v1")

	file := filepath.Join(t.TempDir(), "backup.tgz")
	wantRun(t, run(t, sock, "", "backup", file), 0, "it holds the server's keys")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}
	restored := filepath.Join(t.TempDir(), "state")
	wantRun(t, run(t, "", "", "restore", file, "--state-dir", restored), 0, "not in the backup: images/bases/")
	wantRun(t, run(t, "", "", "restore", file, "--state-dir", restored), 1, "not empty")

	for _, f := range []string{"secrets.age.key", "pki/ca.crt", "images/index.json", "audit.log"} {
		want, _ := os.ReadFile(filepath.Join(dir, f))
		got, err := os.ReadFile(filepath.Join(restored, f))
		if err != nil || (f != "audit.log" && !bytes.Equal(got, want)) {
			t.Errorf("restored %s: %v (equal %v)", f, err, bytes.Equal(got, want))
		}
	}
	db, err := store.Open(filepath.Join(restored, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	box, err := secrets.LoadOrCreate(filepath.Join(restored, "secrets.age.key"))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := db.Secret(context.Background(), idA, "token")
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := box.Decrypt(ct); err != nil || string(pt) != "s3cret-value" {
		t.Fatalf("restored secret = %q, %v", pt, err)
	}
	if rs, _ := db.DHCPReservations(context.Background()); len(rs) != 1 {
		t.Fatalf("restored reservations = %+v", rs)
	}
}

// backup --with-roots through the running daemon holds a machine's volume
// and its base, streamed (no /tmp); restore puts them back. (A root in use left out: server/backup
// TestWithRootsSparse, and vm-tests TestBackupRestoreRoot with a real session.)
func TestBackupWithRoots(t *testing.T) {
	dir, sock := realServer(t)
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("b\n"), 0o644)
	r := run(t, sock, "", "image", "import", "app", src)
	wantRun(t, r, 0, "imported app@v1")
	digest := strings.Fields(strings.TrimPrefix(r.stdout, "imported app@v1 sha256:"))[0]
	images, err := image.Open(image.Config{Dir: filepath.Join(dir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { images.Remove("app"); images.GC(nil) }) // clears the immutable flag
	vols, err := volume.New(volume.Config{Dir: filepath.Join(dir, "volumes"), Bases: images, NoReflink: true})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vols.Create(context.Background(), idA, digest)
	if err != nil {
		t.Fatal(err)
	}
	v.WriteAt([]byte("written by web1"), 4096)
	v.Close()

	file := filepath.Join(t.TempDir(), "backup.tgz")
	// The backup streams from the daemon to FILE: it stages nothing in
	// the temporary directory, here one that does not exist.
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "no-tmp"))
	wantRun(t, run(t, sock, "", "backup", file, "--with-roots"), 0, "roots of 1 machines, on 1 bases")
	if ents, _ := os.ReadDir(dir); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".backup-") }) {
		t.Errorf("the store's copy was left in the state directory")
	}
	restored := filepath.Join(t.TempDir(), "state")
	wantRun(t, run(t, "", "", "restore", file, "--state-dir", restored), 0, "restored the roots of 1 machines and 1 bases")
	for _, f := range []string{"volumes/machines/" + idA + "/disk.cow", "images/bases/sha256-" + digest + ".img"} {
		want, _ := os.ReadFile(filepath.Join(dir, f))
		got, err := os.ReadFile(filepath.Join(restored, f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("restored %s: %v (equal %v)", f, err, bytes.Equal(got, want))
		}
	}
}
