package vmtest

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/secrets"
)

// counterInit is the production test root's /sbin/init: it reports the
// marker of the previous boot ("none" on a fresh volume), increments it,
// syncs and powers off.
const counterInit = `#!/bin/busybox sh
B=/bin/busybox
$B mountpoint -q /proc || $B mount -t proc proc /proc
$B mountpoint -q /sys || $B mount -t sysfs sys /sys
m=none
[ -f /marker ] && m=$($B cat /marker)
echo "root: marker=$m"
n=1
[ "$m" != none ] && n=$((m+1))
echo $n > /marker
$B sync
echo "root: wrote marker"
$B poweroff -f
`

// Tunnel and iSCSI sections of the server configuration in the lab.
var tunnelISCSIConfig = map[string]any{
	"tunnel": map[string]any{"prefix": "10.200.0.0/24", "listen_port": 51820, "endpoint": SealrootIP + ":51820"},
	"iscsi":  map[string]any{"port": 3260},
}

// TestISCSIRootOverTunnel runs the production chain of an iSCSI root with
// nothing test-only in the VM: PXE -> sealroot initramfs -> attestation ->
// kernel WireGuard tunnel to `sealroot serve` -> mutual CHAP login to the
// machine's own target over the tunnel -> ext4 -> switch_root into an
// image imported with `sealroot image import`. The machine's
// copy-on-write volume keeps a marker across boots, `sealroot machine
// reset` takes it back to the base, and a second machine gets its own
// volume and its own CHAP credentials. A volatile root reads the shared
// base read-only over iSCSI and loses its writes at every boot.
func TestISCSIRootOverTunnel(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4")
	begin := time.Now()
	defer func() { t.Logf("TestISCSIRootOverTunnel took %s", time.Since(begin).Round(time.Second)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tpmA, tpmB := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tpmA, tpmB}, Extra: tunnelISCSIConfig})
	if _, err := sr.CLI(ctx, "image", "import", "testroot", BusyboxRootTree(t, counterInit)); err != nil {
		t.Fatal(err)
	}

	var idA string
	t.Run("first_boot_fresh_volume", func(t *testing.T) {
		idA = newISCSIMachine(ctx, t, lab, sr, "vm-iscsi", BIOS, tpmA)
	})
	if idA == "" {
		t.Fatal("machine A was not set up")
	}
	t.Run("reboot_keeps_marker", func(t *testing.T) {
		vm := startPXE(ctx, t, lab, "vm-iscsi-2", BIOS, tpmA)
		expectRoot(ctx, t, vm, `root: marker=1$`)
	})
	t.Run("reset_back_to_base", func(t *testing.T) {
		if _, err := sr.CLI(ctx, "machine", "reset", "--yes", "vm-iscsi"); err != nil {
			t.Fatal(err)
		}
		vm := startPXE(ctx, t, lab, "vm-iscsi-3", BIOS, tpmA)
		expectRoot(ctx, t, vm, `root: marker=none$`)
	})
	t.Run("second_machine_own_volume", func(t *testing.T) {
		idB := newISCSIMachine(ctx, t, lab, sr, "vm-iscsi-b", UEFI, tpmB)
		a, b := targetCHAP(t, sr, idA), targetCHAP(t, sr, idB)
		if a.User == b.User || a.Secret == b.Secret || a.TargetSecret == b.TargetSecret {
			t.Errorf("machines A and B share CHAP credentials")
		}
	})
	t.Run("volatile_over_iscsi", func(t *testing.T) {
		// The shared base, read-only over iSCSI, under a tmpfs upper:
		// the counter's writes are gone at every boot, and the machine's
		// own volume is untouched.
		if _, err := sr.CLI(ctx, "machine", "set-root", "vm-iscsi", "--kind", "volatile", "--via", "iscsi", "--image", "testroot"); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"vm-iscsi-vol", "vm-iscsi-vol-2"} {
			expectRoot(ctx, t, startPXE(ctx, t, lab, name, BIOS, tpmA), `root: marker=none$`)
		}
		if _, err := sr.CLI(ctx, "machine", "set-root", "vm-iscsi", "--kind", "iscsi", "--image", "testroot"); err != nil {
			t.Fatal(err)
		}
		expectRoot(ctx, t, startPXE(ctx, t, lab, "vm-iscsi-4", BIOS, tpmA), `root: marker=1$`)
	})
	t.Run("storage_not_on_lan", func(t *testing.T) {
		lan := SealrootIP + ":3260"
		err := lab.Do(func() error {
			c, err := net.DialTimeout("tcp", lan, 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			t.Errorf("the iSCSI port answers on the LAN address %s; want it on the tunnel only", lan)
		}
	})
}

// newISCSIMachine boots a new machine with TPM tp: pending, its root set
// to image testroot (before approval, so the first attested boot mounts
// it), approved as name; its first root boot must find a fresh volume.
func newISCSIMachine(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, name string, fw Firmware, tp *TPM) string {
	t.Helper()
	vm := startPXE(ctx, t, lab, name, fw, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	if _, err := sr.CLI(ctx, "machine", "set-root", id, "--image", "testroot", "--kind", "iscsi"); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, approveArgs(id, name, fw)...); err != nil {
		t.Fatal(err)
	}
	expectRoot(ctx, t, vm, `root: marker=none$`)
	sr.AgentTimings(ctx, t, id) // the agent's own stage timings, from the server's boot history
	return id
}

// expectRoot waits for the tunnel and root stages, then for the root's
// marker line, the root's last line and QEMU's exit. An agent failure
// ends the test at once with the agent's message.
func expectRoot(ctx context.Context, t *testing.T, vm *VM, marker string) {
	t.Helper()
	for _, re := range []string{`sealroot: \[ok\] tunnel `, `sealroot: \[ok\] root `, marker, `root: wrote marker`} {
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

// targetCHAP decrypts the machine's iSCSI target record in the server's
// state directory and returns its CHAP credentials.
func targetCHAP(t *testing.T, sr *Sealroot, id string) pdu.CHAP {
	t.Helper()
	box, err := secrets.LoadOrCreate(filepath.Join(sr.StateDir, "secrets.age.key"))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := os.ReadFile(filepath.Join(sr.StateDir, "iscsi", id+".target.age"))
	if err != nil {
		t.Fatalf("target record of %s: %v", id, err)
	}
	pt, err := box.Decrypt(ct)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		CHAP pdu.CHAP `json:"chap"`
	}
	if err := json.Unmarshal(pt, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.CHAP.User == "" || rec.CHAP.Secret == "" || rec.CHAP.TargetSecret == "" {
		t.Fatalf("target record of %s has no CHAP credentials", id)
	}
	return rec.CHAP
}
