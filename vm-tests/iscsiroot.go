package vmtest

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/u-root/mkuimage/cpio"

	"github.com/sealroot/sealroot/initramfs"
	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/iscsi"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// Busybox is Debian busybox-static's binary, the only program of the
// test root images.
const Busybox = "/bin/busybox"

// ISCSIPort is where ServeISCSI listens on the lab address.
const ISCSIPort = "3260"

// ISCSIBoot builds the test-only iscsiboot init (testdata/iscsiboot: no
// attestation, plan from the kernel command line) with the modules an
// iSCSI root needs, and returns the kernel and the initramfs.
func ISCSIBoot(ctx context.Context, t testing.TB) (kernel, initrd string) {
	t.Helper()
	k, err := initramfs.FetchKernel(ctx, CacheDir(t))
	if errors.Is(err, initramfs.ErrToolMissing) && !testenv.CI() {
		t.Skipf("vmtest: %v", err)
	}
	if err != nil {
		t.Fatalf("vmtest: fetch kernel: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "iscsiboot")
	if err := initramfs.BuildAgent(ctx, "github.com/sealroot/sealroot/vm-tests/testdata/iscsiboot", bin); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	initrd = filepath.Join(dir, "iscsiboot.cpio.gz")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := initramfs.Build(ctx, initramfs.Options{
		AgentBinary: bin, ModulesRoot: k.ModulesRoot, KernelVersion: k.Version,
		Modules: []string{"virtio_net", "virtio_pci", "virtio_rng", "iscsi_tcp", "sd_mod", "crc32c_generic", "ext4"},
		// gzip: each test appends an uncompressed archive with its plan,
		// and Debian 6.1's kernel loses its place after a zstd archive
		// ("invalid magic at start of compressed archive").
		Compression: "gzip",
	}, f); err != nil {
		t.Fatalf("vmtest: build iscsiboot initramfs: %v", err)
	}
	return k.VMLinuz, initrd
}

// BusyboxRootImage writes an ext4 image of size MiB whose /sbin/init is
// the shell script init (run by busybox sh), with busybox at /bin/busybox
// and empty /dev, /proc, /sys, /run, /tmp for switch_root.
func BusyboxRootImage(t testing.TB, sizeMiB int, init string) string {
	t.Helper()
	RequireTools(t, "mkfs.ext4")
	tree := BusyboxRootTree(t, init)
	img := filepath.Join(t.TempDir(), "root.ext4")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", tree, img, strconv.Itoa(sizeMiB)+"M").CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

// BusyboxRootTree writes the tree of BusyboxRootImage into a directory of
// t.TempDir and returns it.
func BusyboxRootTree(t testing.TB, init string) string {
	t.Helper()
	RequireTools(t, Busybox)
	tree := t.TempDir()
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyFile(Busybox, filepath.Join(tree, "bin", "busybox")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(tree, "bin", "busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "sbin", "init"), []byte(init), 0o755); err != nil {
		t.Fatal(err)
	}
	return tree
}

// ISCSITarget is sealroot's own iSCSI target serving one image in a lab.
type ISCSITarget struct {
	t    testing.TB
	lab  *Lab
	srv  *iscsi.Server
	mu   sync.Mutex
	stop func() // stops the current listener
}

// ServeISCSI serves img as target iqn with mutual CHAP auth on the lab
// address, port ISCSIPort, until t ends.
func (l *Lab) ServeISCSI(t testing.TB, img, iqn string, auth *pdu.CHAP) *ISCSITarget {
	t.Helper()
	store, err := iscsi.OpenFile(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv := &iscsi.Server{Logger: testenv.Logger(t, "target", hclog.Info)}
	if err := srv.AddTarget(&iscsi.Target{IQN: iqn, LUN: store, Auth: auth}); err != nil {
		t.Fatal(err)
	}
	it := &ISCSITarget{t: t, lab: l, srv: srv}
	it.Start()
	t.Cleanup(it.Stop)
	return it
}

// Start listens again after Stop.
func (it *ISCSITarget) Start() {
	var ln net.Listener
	err := it.lab.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(it.lab.Addr.Addr().String(), ISCSIPort))
		return err
	})
	if err != nil {
		it.t.Fatalf("vmtest: iSCSI listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		it.srv.Serve(ctx, ln)
	}()
	it.mu.Lock()
	it.stop = func() { cancel(); <-done }
	it.mu.Unlock()
}

// Stop closes the listener and every connection, as a server restart
// would.
func (it *ISCSITarget) Stop() {
	it.mu.Lock()
	stop := it.stop
	it.stop = nil
	it.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// ISCSIPlanInitrd writes, in t.TempDir, the iscsiboot initramfs initrd
// followed by a second archive holding the payload p at
// /etc/iscsiboot/plan.json (0600): the kernel unpacks both, and the plan's
// CHAP values never appear on the kernel command line.
func ISCSIPlanInitrd(t testing.TB, initrd string, p *wire.Payload) string {
	t.Helper()
	plan, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	img, err := AppendArchive(base,
		cpio.Directory("etc", 0o755),
		cpio.Directory("etc/iscsiboot", 0o700),
		cpio.StaticRecord(plan, cpio.Info{Name: "etc/iscsiboot/plan.json", Mode: cpio.S_IFREG | 0o600}),
	)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "iscsiboot-plan.cpio")
	if err := os.WriteFile(out, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}
