package machines

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/rootnfs"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// noExports stands in for nfs-ganesha: the test reads the machine's root
// through the server's own overlay mount, as ganesha would export it.
type noExports struct{}

func (noExports) WriteExports([]nfs.Export) (func(context.Context) error, error) {
	return func(context.Context) error { return nil }, nil
}

// An NFS machine's real overlay (upper over the base's tree, mounted by
// the provider as for a boot) is captured as the machine saw it: a file
// it wrote is in the new image, a base file it deleted is not. While the
// machine is exported with an active tunnel peer the capture is refused
// and nothing changes; after the capture the machine boots its root again
// with its changes.
func TestCaptureNFSRoot(t *testing.T) {
	testenv.RequireRoot(t, "mounts overlays")
	ctx := context.Background()
	c := newCaptureEnv(t)
	active := true
	dir := t.TempDir()
	p, err := rootnfs.New(rootnfs.Config{Dir: dir, Images: c.images, Exporter: noExports{},
		ServerAddr: netip.MustParseAddr("10.200.0.1"), Active: func(string) bool { return active },
		Logger: testenv.Logger(t, "", hclog.Debug)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	rs := roots.New(roots.Config{Providers: map[string]roots.Provider{roots.KindISCSI: c.p, roots.KindNFS: p}})
	c.mgr = New(Config{Store: c.st, Audit: c.log, Images: c.images, Volumes: c.vols, Roots: rs})
	root := wire.RootPlan{Kind: wire.RootNFS, Params: map[string]string{wire.ImageParam: "debian"}}
	if err := c.st.CreateMachine(ctx, &store.Machine{ID: idB, Name: "tmpl", State: store.StateApproved, Root: root}); err != nil {
		t.Fatal(err)
	}
	boot := func() {
		t.Helper()
		req := roots.Request{MachineID: idB, Plan: root, Tunnel: &wire.TunnelPlan{Address: "10.200.0.5/32"}}
		if _, _, err := rs.Prepare(ctx, req); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
	}
	boot()
	mnt := filepath.Join(dir, idB, "root")
	if err := errors.Join(
		os.WriteFile(filepath.Join(mnt, "etc", "prepared"), []byte("yes\n"), 0o644),
		os.Remove(filepath.Join(mnt, "etc", "hostname")),
	); err != nil {
		t.Fatal(err)
	}

	_, err = c.mgr.CaptureImage(ctx, "prepared", "tmpl")
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "power it off") {
		t.Fatalf("capture of a running NFS machine: %v, want ErrConflict saying to power it off", err)
	}
	if _, err := c.images.Get("prepared"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("refused capture named an image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "etc", "prepared")); err != nil {
		t.Errorf("refused capture took the running machine's root away: %v", err)
	}

	active = false // powered off: no handshake for minutes
	im, err := c.mgr.CaptureImage(ctx, "prepared", "tmpl")
	if err != nil {
		t.Fatalf("capture of a powered-off NFS machine: %v", err)
	}
	if got := c.lastEntries(t, 1); got != "image-capture ok" {
		t.Errorf("audit of the capture: %s", got)
	}
	tree, err := c.images.TreePath(im.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(tree, "etc", "prepared")); err != nil || string(b) != "yes\n" {
		t.Errorf("captured etc/prepared = %q, %v; want the machine's write", b, err)
	}
	if _, err := os.Lstat(filepath.Join(tree, "etc", "hostname")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("captured etc/hostname: %v; the machine deleted it", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, idB, "merged")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("merged view left behind: %v", err)
	}
	// The capture released the root: the machine boots it again.
	boot()
	if _, err := os.Stat(filepath.Join(mnt, "etc", "prepared")); err != nil {
		t.Errorf("after the capture the machine's root lost its write: %v", err)
	}
}
