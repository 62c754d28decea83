package iscsi

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/test/testenv"
)

// fakeScanDirs makes the sysfs entries scan writes and globs for session
// 1, host 0, LUN 0 whose disk is sdz, and returns the sys and dev dirs.
func fakeScanDirs(t *testing.T) (sys, dev string) {
	t.Helper()
	sys, dev = t.TempDir(), t.TempDir()
	host := filepath.Join(sys, "class", "scsi_host", "host0")
	block := filepath.Join(sys, "class", "iscsi_session", "session1", "device", "target0:0:0", "0:0:0:0", "block", "sdz")
	for _, d := range []string{host, block} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(host, "scan"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return sys, dev
}

// unusedCharMajor returns a character major of the ranges for local and
// experimental use (60-63, 120-127) that /proc/devices does not list.
func unusedCharMajor(t *testing.T) uint32 {
	t.Helper()
	b, err := os.ReadFile("/proc/devices")
	if err != nil {
		t.Fatal(err)
	}
	chars, _, _ := strings.Cut(string(b), "Block devices:")
	used := map[string]bool{}
	for _, line := range strings.Split(chars, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			used[f[0]] = true
		}
	}
	for _, m := range []uint32{60, 61, 62, 63, 120, 121, 122, 123, 124, 125, 126, 127} {
		if !used[strconv.Itoa(int(m))] {
			return m
		}
	}
	t.Fatal("every local-use character major is registered")
	return 0
}

// TestScanWaitsUntilTheDiskOpens: the kernel creates the disk's node
// before the disk is live, and opening it meanwhile fails with ENXIO
// (mounting then failed with "no such device or address" in slow
// guests). scan must wait until the node opens, and say why it gave up.
func TestScanWaitsUntilTheDiskOpens(t *testing.T) {
	testenv.RequireRoot(t, "mknod")
	sys, dev := fakeScanDirs(t)
	node := filepath.Join(dev, "sdz")
	// A character device of a major no driver registered: opening it
	// fails with ENXIO, as a disk not yet live.
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(unusedCharMajor(t), 77))); err != nil {
		t.Fatalf("mknod: %v", err)
	}
	if f, err := os.Open(node); err == nil {
		f.Close()
		t.Fatal("open of a node of an unregistered major succeeded, want ENXIO")
	} else if !errors.Is(err, unix.ENXIO) {
		t.Fatalf("open of a node of an unregistered major = %v, want ENXIO", err)
	}
	d := &Disk{SID: 1, HostNo: 0}

	short := Target{SysDir: sys, DevDir: dev, ScanTimeout: 300 * time.Millisecond}.withDefaults()
	if _, err := scan(context.Background(), short, d); err == nil || !strings.Contains(err.Error(), "never opened") ||
		!strings.Contains(err.Error(), "no such device or address") {
		t.Fatalf("scan of a node that never opens = %v, want an error saying it never opened (ENXIO)", err)
	}

	ready := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		if err := os.Remove(node); err != nil {
			ready <- err
			return
		}
		ready <- os.WriteFile(node, nil, 0o600) // the disk is live: it opens
	}()
	got, err := scan(context.Background(), Target{SysDir: sys, DevDir: dev, ScanTimeout: 10 * time.Second}.withDefaults(), d)
	if werr := <-ready; werr != nil {
		t.Fatal(werr)
	}
	if err != nil || got != node {
		t.Fatalf("scan = %q, %v; want %s once it opens", got, err, node)
	}
}
