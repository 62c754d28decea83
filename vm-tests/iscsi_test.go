package vmtest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/wire"
)

// markerInit is the test root's /sbin/init: it reports the marker left by
// the previous boot, increments it, syncs and powers off.
const markerInit = `#!/bin/busybox sh
B=/bin/busybox
if [ -f /marker ]; then
	n=$($B cat /marker)
	echo "iscsiroot: marker found: $n"
	n=$((n+1))
else
	echo "iscsiroot: no marker"
	n=1
fi
echo $n > /marker
$B sync
echo "iscsiroot: wrote marker $n"
$B poweroff -f
`

const (
	rootIQN       = "iqn.2026-01.org.sealroot:vmtest-root"
	rootInitiator = "iqn.2026-01.org.sealroot:vmtest-machine"
)

// TestISCSIRoot boots a VM whose root is an ext4 image served by
// sealroot's own iSCSI target in the lab, with mutual CHAP: the initiator
// logs in from Go, hands the socket to the kernel, mounts the disk and
// switch_roots into a busybox init. A marker written on boot 1 must be
// there on boot 2 (and in the image on the host); a wrong CHAP secret
// must be refused.
func TestISCSIRoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "nsenter", Busybox, "mkfs.ext4", "debugfs")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	kernel, initrd := ISCSIBoot(ctx, t)
	img := BusyboxRootImage(t, 32, markerInit)
	lab := NewLab(t, LabOptions{})
	lab.ServeDHCP(t, func(*dhcpv4.DHCPv4, int) string { return "" })
	auth := &pdu.CHAP{User: "vmtest-machine", Secret: "initiator-secret-0123456789abcdef",
		TargetUser: "sealroot", TargetSecret: "target-secret-0123456789abcdef01"}
	lab.ServeISCSI(t, img, rootIQN, auth)

	boot := func(t *testing.T, name string, secret string) *VM {
		p := &wire.Payload{
			Root: wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{
				wire.ISCSIPortal: SealrootIP + ":" + ISCSIPort, wire.ISCSITarget: rootIQN, wire.ISCSIInitiator: rootInitiator,
			}},
			Secrets: map[string][]byte{
				wire.SecretCHAPUser: []byte(auth.User), wire.SecretCHAPSecret: []byte(secret),
				wire.SecretCHAPTargetUser: []byte(auth.TargetUser), wire.SecretCHAPTargetSecret: []byte(auth.TargetSecret),
			},
		}
		vm := lab.NewVM(t, VMOptions{Name: name, Kernel: kernel, Initrd: ISCSIPlanInitrd(t, initrd, p),
			Append: "console=ttyS0 panic=-1"})
		if err := vm.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return vm
	}
	waitOff := func(t *testing.T, vm *VM) {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := vm.Wait(wctx); err != nil {
			t.Fatalf("VM did not power off: %v", err)
		}
		vm.LogTimings()
	}

	t.Run("first_boot_writes_marker", func(t *testing.T) {
		start := time.Now()
		vm := boot(t, "iscsi-1", auth.Secret)
		m := expectBoot(ctx, t, vm, `iscsiboot: root mounted in (\S+)`)
		t.Logf("attach+mount took %s in the VM; %s since QEMU start", m[1], time.Since(start).Round(time.Millisecond))
		expectBoot(ctx, t, vm, `iscsiroot: no marker`)
		expectBoot(ctx, t, vm, `iscsiroot: wrote marker 1`)
		waitOff(t, vm)
		if got := debugfsCat(t, img, "/marker"); got != "1" {
			t.Errorf("marker in the image on the host = %q, want 1", got)
		}
	})
	t.Run("second_boot_sees_marker", func(t *testing.T) {
		vm := boot(t, "iscsi-2", auth.Secret)
		expectBoot(ctx, t, vm, `iscsiroot: marker found: 1`)
		expectBoot(ctx, t, vm, `iscsiroot: wrote marker 2`)
		waitOff(t, vm)
	})
	t.Run("wrong_chap_secret_refused", func(t *testing.T) {
		vm := boot(t, "iscsi-wrong", "not-the-secret-0123456789abcdef")
		expectBoot(ctx, t, vm, `iscsiboot: failed: .*authentication failed`)
		waitOff(t, vm)
		if got := debugfsCat(t, img, "/marker"); got != "2" {
			t.Errorf("marker after the refused boot = %q, want 2", got)
		}
	})
}

// debugfsCat reads a file from an ext4 image on the host.
func debugfsCat(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}
