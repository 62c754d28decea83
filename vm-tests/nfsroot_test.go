package vmtest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nfsWriterInit is the NFS restart test root's /sbin/init: it holds a
// file open for the whole run (its NFSv4 open state must be reclaimed
// after a server restart) and writes and syncs a marker in a loop,
// printing "root: wrote N" once marker N is committed on the server.
const nfsWriterInit = `#!/bin/busybox sh
B=/bin/busybox
$B mountpoint -q /proc || $B mount -t proc proc /proc
n=0
[ -f /marker ] && n=$($B cat /marker)
echo "root: resumed at marker $n"
exec 3>>/held
while :; do
  n=$((n+1))
  echo $n >&3 || break
  echo $n > /marker.new || break
  $B mv /marker.new /marker || break
  $B sync || break
  echo "root: wrote $n"
  $B usleep 300000
done
echo "root: write $n failed"
exec $B sleep 100000
`

// Tunnel and NFS sections of the server configuration in the lab.
var tunnelNFSConfig = map[string]any{
	"tunnel": map[string]any{"prefix": "10.200.0.0/24", "listen_port": 51820, "endpoint": SealrootIP + ":51820"},
	"nfs":    map[string]any{"grace_seconds": 15, "lease_seconds": 15},
}

// nfsRecoveryWait bounds the wait for writes after a server restart:
// WireGuard's re-handshake, the NFSv4 lease and grace periods, slack.
const nfsRecoveryWait = 150 * time.Second

// TestNFSRoot runs the production chain of NFSv4 roots: PXE -> sealroot
// initramfs -> attestation -> kernel WireGuard tunnel -> NFSv4.2 mount of
// the machine's own export from the nfs-ganesha that `sealroot serve`
// runs on its tunnel address -> switch_root. The machine's overlay keeps
// a marker across boots (and the operator sees it in the machine's upper
// directory on the server), `sealroot machine reset` takes it back to the
// base, a volatile machine loses its writes at every boot by design, the
// NFS port is not on the LAN, and a machine writing through a server
// restart goes on writing.
func TestNFSRoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4", "ganesha.nfsd")
	begin := time.Now()
	defer func() { t.Logf("TestNFSRoot took %s", time.Since(begin).Round(time.Second)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tpmA, tpmB := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "nfs-lab"})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tpmA, tpmB}, Extra: tunnelNFSConfig})
	t.Cleanup(func() { stopAndUnmount(t, sr) })
	for name, init := range map[string]string{"testroot": counterInit, "writer": nfsWriterInit} {
		if _, err := sr.CLI(ctx, "image", "import", name, BusyboxRootTree(t, init)); err != nil {
			t.Fatal(err)
		}
	}

	var idA string
	t.Run("first_boot_fresh_root", func(t *testing.T) {
		idA = newRootMachine(ctx, t, lab, sr, "vm-nfs", "nfs", BIOS, tpmA)
	})
	if idA == "" {
		t.Fatal("machine A was not set up")
	}
	upper := filepath.Join(sr.StateDir, "nfs", "roots", idA, "upper")
	t.Run("reboot_keeps_marker", func(t *testing.T) {
		vm := startPXE(ctx, t, lab, "vm-nfs-2", BIOS, tpmA)
		expectRoot(ctx, t, vm, `root: marker=1$`)
		// File-level roots can be inspected from the server.
		if b, err := os.ReadFile(filepath.Join(upper, "marker")); err != nil || string(b) != "2\n" {
			t.Errorf("marker in the machine's upper directory on the server = %q, %v; want 2", b, err)
		}
	})
	t.Run("reset_back_to_base", func(t *testing.T) {
		if _, err := sr.CLI(ctx, "machine", "reset", "--yes", "vm-nfs"); err != nil {
			t.Fatal(err)
		}
		vm := startPXE(ctx, t, lab, "vm-nfs-3", BIOS, tpmA)
		expectRoot(ctx, t, vm, `root: marker=none$`)
	})
	t.Run("volatile_group_loses_writes", func(t *testing.T) {
		// Chosen per group: B joins the group "kiosks", whose machines
		// mount the shared base read-only under a tmpfs upper.
		if _, err := sr.CLI(ctx, "group", "set-root", "kiosks", "--kind", "volatile", "--image", "testroot"); err != nil {
			t.Fatal(err)
		}
		vm := startPXE(ctx, t, lab, "vm-volatile", BIOS, tpmB)
		id := expectBoot(ctx, t, vm, rePending.String())[1]
		for _, args := range [][]string{{"machine", "set-group", id, "kiosks"}, approveArgs(id, "vm-volatile", BIOS)} {
			if _, err := sr.CLI(ctx, args...); err != nil {
				t.Fatal(err)
			}
		}
		expectRoot(ctx, t, vm, `root: marker=none$`)
		vm = startPXE(ctx, t, lab, "vm-volatile-2", BIOS, tpmB)
		expectRoot(ctx, t, vm, `root: marker=none$`)
	})
	t.Run("nfs_not_on_lan", func(t *testing.T) {
		lan := SealrootIP + ":2049"
		err := lab.Do(func() error {
			c, err := net.DialTimeout("tcp", lan, 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			t.Errorf("the NFS port answers on the LAN address %s; want it on the tunnel only", lan)
		}
	})
	t.Run("server_restart", func(t *testing.T) {
		for _, args := range [][]string{{"machine", "set-root", "vm-nfs", "--kind", "nfs", "--image", "writer"}, {"machine", "reset", "--yes", "vm-nfs"}} {
			if _, err := sr.CLI(ctx, args...); err != nil {
				t.Fatal(err)
			}
		}
		vm := startPXE(ctx, t, lab, "vm-nfs-writer", BIOS, tpmA)
		for _, re := range []string{`sealroot: \[ok\] tunnel `, `sealroot: \[ok\] root `} {
			if m := expectBoot(ctx, t, vm, `^(?:sealroot: (?:boot failed|\[FAILED\]) (.*)|`+re+`)`); m[1] != "" {
				t.Fatalf("agent failed: %s", m[1])
			}
		}
		expectWrote(ctx, t, vm, 3)
		down, err := sr.Restart(ctx, t, lab)
		if err != nil {
			t.Fatal(err)
		}
		atRestart := lastWrote(t, vm)
		t.Logf("sealroot serve restarted in %s; last committed marker before: %d", down.Round(time.Millisecond), atRestart)
		back := time.Now()
		wctx, cancel := context.WithTimeout(ctx, nfsRecoveryWait)
		defer cancel()
		n := expectWroteWithin(wctx, t, vm, atRestart+3)
		t.Logf("writes go on after the restart: marker %d (%d before), %s after the server was back",
			n, atRestart, time.Since(back).Round(time.Millisecond))
		if b, err := os.ReadFile(filepath.Join(upper, "held")); err != nil || !strings.Contains(string(b), "\n"+strconv.Itoa(atRestart+2)+"\n") {
			t.Errorf("the file held open across the restart lacks later writes: %v", err)
		}
	})
}

// newRootMachine boots a new machine with TPM tp: pending, its root set
// to image testroot of kind (before approval, so the first attested boot
// mounts it), approved as name; its first root boot must find no marker.
func newRootMachine(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, name, kind string, fw Firmware, tp *TPM) string {
	t.Helper()
	id, vm := approveWithRoot(ctx, t, lab, sr, name, kind, "testroot", fw, tp)
	expectRoot(ctx, t, vm, `root: marker=none$`)
	return id
}

// approveWithRoot boots a new machine with TPM tp until it is pending,
// sets its root (kind, image) and approves it as name. The VM goes on to
// boot its root.
func approveWithRoot(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, name, kind, image string, fw Firmware, tp *TPM) (string, *VM) {
	t.Helper()
	vm := startPXE(ctx, t, lab, name, fw, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	if _, err := sr.CLI(ctx, "machine", "set-root", id, "--image", image, "--kind", kind); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, approveArgs(id, name, fw)...); err != nil {
		t.Fatal(err)
	}
	return id, vm
}

// stopAndUnmount stops sr's server gracefully, so it unmounts the
// machines' roots, and lazily unmounts whatever is left under its state
// directory, so the test's temporary directories can go.
func stopAndUnmount(t *testing.T, sr *Sealroot) {
	if pid, err := sr.servePID(); err == nil {
		syscall.Kill(pid, syscall.SIGTERM)
		if !waitGone(pid, 20*time.Second) {
			syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, 5*time.Second)
		}
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], sr.StateDir+"/") {
			t.Logf("unmounting %s left by the server", f[4])
			syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
}
