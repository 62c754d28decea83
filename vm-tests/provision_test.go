package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// provisionInit is the test root's /sbin/init for TestProvisionedRoot: it
// reports what the agent provisioned (host name, the secrets mount, the
// secret's mode, owner and digest, never its value, and a rendered file),
// syncs and powers off.
const provisionInit = `#!/bin/busybox sh
B=/bin/busybox
$B mountpoint -q /proc || $B mount -t proc proc /proc
$B mountpoint -q /sys || $B mount -t sysfs sys /sys
S=/run/sealroot/secrets
echo "root: hostname=$($B hostname)"
echo "root: mount=$($B grep " $S " /proc/mounts)"
echo "root: dir=$($B stat -c '%a %u:%g' $S)"
echo "root: secret=$($B stat -c '%a %u:%g' $S/api-token) sha256=$($B sha256sum $S/api-token | $B cut -d' ' -f1)"
echo "root: conf=$($B cat /etc/sealroot/node.conf) mode=$($B stat -c '%a %u:%g' /etc/sealroot/node.conf)"
$B sync
echo "root: wrote marker"
$B poweroff -f
`

// filesInit is the /sbin/init of the group's volatile image: it reports
// the image it is and the files the agent wrote, and powers off.
const filesInit = `#!/bin/busybox sh
B=/bin/busybox
echo "root: image=filesroot hostname=$($B hostname)"
echo "root: conf=$($B cat /etc/sealroot/node.conf)"
echo "root: wrote marker"
$B poweroff -f
`

// TestProvisionedRoot boots a machine into its iSCSI root over the tunnel
// (the production chain) with an operator secret and a templated
// configuration file: the booted system finds the secret in a read-only
// tmpfs at /run/sealroot/secrets/api-token (0400, root), its host name set
// from the machine's name, and the file rendered for it. Afterwards no
// file of the server's state (the machine's volume, the store, the audit
// log, the initramfs) and not the console hold the secret's value.
//
// Then two machines of a group boot the group's volatile root (one base,
// read-only over iSCSI): each finds the group's templated file rendered
// for it, and the first its own file, which wins over the group's.
func TestProvisionedRoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tp, tpB := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp, tpB}, Extra: tunnelISCSIConfig})
	if _, err := sr.CLI(ctx, "image", "import", "testroot", BusyboxRootTree(t, provisionInit)); err != nil {
		t.Fatal(err)
	}
	value := []byte("vm-secret-VALUE-7f3a9c")
	in := t.TempDir()
	secretFile, confFile := filepath.Join(in, "secret"), filepath.Join(in, "node.conf")
	os.WriteFile(secretFile, value, 0o600)
	os.WriteFile(confFile, []byte("name={{.Name}}"), 0o600)

	const name = "vm-prov"
	if !t.Run("iscsi_root_secret_and_file", func(t *testing.T) {
		provisionISCSI(ctx, t, lab, sr, tp, name, secretFile, confFile, value)
	}) {
		return
	}
	t.Run("volatile_group_files", func(t *testing.T) {
		if _, err := sr.CLI(ctx, "image", "import", "filesroot", BusyboxRootTree(t, filesInit)); err != nil {
			t.Fatal(err)
		}
		tmpl := filepath.Join(t.TempDir(), "group.conf")
		os.WriteFile(tmpl, []byte("group-file name={{.Name}} group={{.Group}}"), 0o600)
		for _, args := range [][]string{
			{"group", "set-root", "lab", "--kind", "volatile", "--via", "iscsi", "--image", "filesroot"},
			{"group", "files", "set", "lab", "/etc/sealroot/node.conf", tmpl, "--template"},
			{"machine", "set-group", name, "lab"},
		} {
			if _, err := sr.CLI(ctx, args...); err != nil {
				t.Fatal(err)
			}
		}
		// vm-prov: its own /etc/sealroot/node.conf wins over the group's.
		vm := startPXE(ctx, t, lab, name+"-vol", BIOS, tp)
		expectLines(ctx, t, vm, `root: image=filesroot hostname=`+name+`$`, `root: conf=name=`+name+`$`)
		// A second machine gets the group's file, rendered for it.
		const nameB = "vm-files-b"
		vm = startPXE(ctx, t, lab, nameB, BIOS, tpB)
		idB := expectBoot(ctx, t, vm, rePending.String())[1]
		for _, args := range [][]string{{"machine", "set-group", idB, "lab"}, approveArgs(idB, nameB, BIOS)} {
			if _, err := sr.CLI(ctx, args...); err != nil {
				t.Fatal(err)
			}
		}
		expectLines(ctx, t, vm, `root: image=filesroot hostname=`+nameB+`$`, `root: conf=group-file name=`+nameB+` group=lab$`)
	})
}

// provisionISCSI is TestProvisionedRoot's first part.
func provisionISCSI(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, tp *TPM, name, secretFile, confFile string, value []byte) {
	sum := sha256.Sum256(value)
	vm := startPXE(ctx, t, lab, name, BIOS, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	for _, args := range [][]string{
		{"machine", "set-root", id, "--image", "testroot", "--kind", "iscsi"},
		{"secret", "set", id, "api-token", secretFile},
		{"machine", "files", "set", id, "/etc/sealroot/node.conf", confFile, "--template", "--mode", "0640", "--owner", "0:0"},
		approveArgs(id, name, BIOS),
	} {
		if _, err := sr.CLI(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	expectLines(ctx, t, vm,
		`sealroot: \[ok\] provision `,
		`root: hostname=`+name+`$`,
		`root: mount=tmpfs /run/sealroot/secrets tmpfs ro,nosuid,nodev,noexec`,
		`root: dir=700 0:0$`,
		`root: secret=400 0:0 sha256=`+hex.EncodeToString(sum[:])+`$`,
		`root: conf=name=`+name+` mode=640 0:0$`,
	)

	// No trace of the value: not on the machine's persistent volume, in
	// the store, the audit log or the artifacts, nor on the console.
	volumes := 0
	filepath.WalkDir(sr.StateDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if rel, _ := filepath.Rel(sr.StateDir, path); regexp.MustCompile(`^volumes/`).MatchString(rel) {
			volumes++
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, value) {
			t.Errorf("the secret's value is in %s", path)
		}
		return nil
	})
	if volumes == 0 {
		t.Errorf("no volume files under %s/volumes: the persistent root was not checked", sr.StateDir)
	}
	if b, err := os.ReadFile(vm.ConsoleLog()); err != nil || bytes.Contains(b, value) {
		t.Errorf("console log: %v, or it holds the secret's value", err)
	}

	// The agent reported its boot over the tunnel: its step timings are
	// in the server's boot history and its log is stored (the walk above
	// covered state.db, where it is) without the secret.
	var names []string
	for _, st := range sr.AgentTimings(ctx, t, id) {
		names = append(names, st.Name)
	}
	if got := strings.Join(names, " "); got != "entropy modules network attest tunnel root provision" {
		t.Errorf("agent stages in the boot history = %q, want every step up to provision", got)
	}
	out, err := sr.CLI(ctx, "machine", "log", id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "sealroot: [ok] tunnel") || !strings.Contains(out, "sealroot: [ok] provision") {
		t.Errorf("machine log lacks the agent's steps:\n%s", out)
	}
	if strings.Contains(out, string(value)) {
		t.Errorf("machine log holds the secret's value:\n%s", out)
	}
}

// expectLines waits for each of res in turn, then for "root: wrote
// marker" and the VM's power-off; an agent failure ends the test at once.
func expectLines(ctx context.Context, t *testing.T, vm *VM, res ...string) {
	t.Helper()
	for _, re := range append(res, `root: wrote marker`) {
		m := expectBoot(ctx, t, vm, `^(?:sealroot: (?:boot failed|\[FAILED\]) (.*)|`+re+`)`)
		if m[1] != "" {
			t.Fatalf("agent failed: %s", m[1])
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("VM did not power off: %v", err)
	}
	vm.LogTimings()
}
