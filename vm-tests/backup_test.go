package vmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// backupInit is TestBackupRestoreRoot's /sbin/init: it reports the
// marker of the previous boot and the digest of the machine's secret
// (never its value), writes the next marker, syncs and powers off.
const backupInit = `#!/bin/busybox sh
B=/bin/busybox
$B mountpoint -q /proc || $B mount -t proc proc /proc
m=none
[ -f /marker ] && m=$($B cat /marker)
echo "root: marker=$m"
echo "root: secret sha256=$($B sha256sum /run/sealroot/secrets/api-token | $B cut -d' ' -f1)"
n=1
[ "$m" != none ] && n=$((m+1))
echo $n > /marker
$B sync
echo "root: wrote marker"
$B poweroff -f
`

// TestBackupRestoreRoot backs up a running server with --with-roots
// while its machine (an iSCSI root over the tunnel, with a secret) is
// off after writing to its root, wipes the state directory, restores the
// backup into a fresh one and starts the server from it: the machine
// boots again, attests, gets its secret and finds what it wrote.
func TestBackupRestoreRoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, Extra: tunnelISCSIConfig})
	if _, err := sr.CLI(ctx, "image", "import", "testroot", BusyboxRootTree(t, backupInit)); err != nil {
		t.Fatal(err)
	}
	value := []byte("backup-secret-VALUE-51c0")
	sum := sha256.Sum256(value)
	secretRe := `root: secret sha256=` + hex.EncodeToString(sum[:]) + `$`
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, value, 0o600)

	const name = "vm-backup"
	vm := startPXE(ctx, t, lab, name, BIOS, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	for _, args := range [][]string{
		{"machine", "set-root", id, "--image", "testroot", "--kind", "iscsi"},
		{"secret", "set", id, "api-token", secretFile},
		approveArgs(id, name, BIOS),
	} {
		if _, err := sr.CLI(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	expectLines(ctx, t, vm, `root: marker=none$`, secretRe)

	// The server runs; the machine is off, its target still installed.
	// Its iSCSI session (a powered-off initiator does not log out) is in
	// use until the target's NOP-In pings time it out (15 s): until then
	// the backup leaves the root out and says so.
	file := filepath.Join(t.TempDir(), "sealroot.backup")
	var out string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(5 * time.Second) {
		var err error
		if out, err = sr.CLI(ctx, "backup", file, "--with-roots"); err != nil {
			t.Fatal(err)
		}
		t.Logf("backup: %s", out)
		if !strings.Contains(out, "left out") || time.Now().After(deadline) {
			break
		}
		if !strings.Contains(out, "an iSCSI session is logged in to its root") {
			t.Fatalf("backup left the root out for another reason: %q", out)
		}
	}
	if !strings.Contains(out, "roots of 1 machines, on 1 bases") {
		t.Fatalf("backup output %q: want the machine's root in it", out)
	}
	if fi, err := os.Stat(file); err == nil {
		t.Logf("backup size: %d bytes", fi.Size())
	}

	// Wipe the server's state, restore it into a fresh directory at the
	// same place (the configuration names it), start the server on it.
	if err := sr.Stop(); err != nil {
		t.Fatal(err)
	}
	clearImmutable(filepath.Join(sr.StateDir, "images", "bases"))
	if err := os.RemoveAll(sr.StateDir); err != nil {
		t.Fatal(err)
	}
	out, err := sr.CLI(ctx, "restore", file, "--state-dir", sr.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: %s", out)
	if err := sr.Start(ctx, t, lab); err != nil {
		t.Fatal(err)
	}
	vm = startPXE(ctx, t, lab, name+"-2", BIOS, tp)
	expectLines(ctx, t, vm, `sealroot: \[ok\] root `, `root: marker=1$`, secretRe)
}
