package vmtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// templateInit is TestNFSCaptureBackup's /sbin/init: it reports what
// the root holds (a file the template writes, a file of the base the
// template deletes), makes the template's changes if they are not there
// yet, syncs and powers off.
const templateInit = `#!/bin/busybox sh
B=/bin/busybox
$B mountpoint -q /proc || $B mount -t proc proc /proc
k=none
[ -f /keep ] && k=$($B cat /keep)
g=absent
[ -f /etc/gone ] && g=present
echo "root: keep=$k gone=$g"
[ "$k" = none ] && echo template-c0ffee > /keep
$B rm -f /etc/gone
$B sync
echo "root: wrote marker"
$B poweroff -f
`

// TestNFSCaptureBackup prepares a template machine on an NFS root (it
// writes a file and deletes one of its base), captures its root as a new
// image with `image capture --from` once it is off, and boots a second
// machine on that image: it sees the file and not the deleted one. The
// template's root is also backed up with --with-roots, the state wiped
// and restored, and the template boots again on its restored upper.
func TestNFSCaptureBackup(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4", "ganesha.nfsd")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tpmA, tpmB := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "nfscap"})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tpmA, tpmB}, Extra: withShortLetGo(tunnelNFSConfig)})
	t.Cleanup(func() { stopAndUnmount(t, sr) })
	tree := BusyboxRootTree(t, templateInit)
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	if err := os.WriteFile(filepath.Join(tree, "etc", "gone"), []byte("base file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, "image", "import", "base", tree); err != nil {
		t.Fatal(err)
	}

	_, vm := approveWithRoot(ctx, t, lab, sr, "vm-template", "nfs", "base", BIOS, tpmA)
	expectLines(ctx, t, vm, `root: keep=none gone=present$`)

	// The template is off; its tunnel peer counts as active until
	// limits.let_go_after (20 s here, 3 min by default) after its last
	// handshake, and its boot until boot_grace after its root was handed
	// out: until then capture refuses.
	var out string
	begin := time.Now()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(2 * time.Second) {
		var err error
		out, err = sr.CLI(ctx, "image", "capture", "golden", "--from", "vm-template")
		if err == nil {
			break
		}
		if !strings.Contains(out+err.Error(), "power it off") || time.Now().After(deadline) {
			t.Fatalf("image capture: %v: %s", err, out)
		}
	}
	t.Logf("capture (%s after power-off): %s", time.Since(begin).Round(time.Second), out)
	file := filepath.Join(t.TempDir(), "sealroot.backup")
	if out, err := sr.CLI(ctx, "backup", file, "--with-roots"); err != nil || !strings.Contains(out, "roots of 1 machines") {
		t.Fatalf("backup --with-roots: %v: %s; want the template's root in it", err, out)
	}

	_, vm = approveWithRoot(ctx, t, lab, sr, "vm-clone", "nfs", "golden", BIOS, tpmB)
	expectLines(ctx, t, vm, `root: keep=template-c0ffee gone=absent$`)

	// Wipe, restore, start again: the template's upper is back.
	if err := sr.Stop(); err != nil {
		t.Fatal(err)
	}
	stopAndUnmount(t, sr) // what the server left mounted
	clearImmutable(filepath.Join(sr.StateDir, "images", "bases"))
	if err := os.RemoveAll(sr.StateDir); err != nil {
		t.Fatal(err)
	}
	if out, err := sr.CLI(ctx, "restore", file, "--state-dir", sr.StateDir); err != nil {
		t.Fatalf("restore: %v: %s", err, out)
	} else {
		t.Logf("restore: %s", out)
	}
	if err := sr.Start(ctx, t, lab); err != nil {
		t.Fatal(err)
	}
	vm = startPXE(ctx, t, lab, "vm-template-2", BIOS, tpmA)
	expectLines(ctx, t, vm, `sealroot: \[ok\] root `, `root: keep=template-c0ffee gone=absent$`)
}
