package vmtest

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sealroot/sealroot/agent/bootnext"
)

// menuInit is the /sbin/init of the menu test's images: it says which
// image it is and powers off.
func menuInit(image string) string {
	return `#!/bin/busybox sh
B=/bin/busybox
echo "root: image=` + image + `"
echo "root: wrote marker"
$B poweroff -f
`
}

// TestBootMenu boots a BIOS machine whose boot menu offers two images
// (each a volatile root over that image) and the local disk, with a 3 s
// timeout and the second image as default: the agent shows the menu on
// the serial console, says the local disk is not available on this BIOS
// machine, takes the default when nobody types, and the server releases
// the root over the chosen image. Then a UEFI machine with a disk takes
// its menu's default, the local disk (see menuLocalDisk).
func TestBootMenu(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	tp, tpU := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp, tpU}, Extra: tunnelISCSIConfig})
	for _, image := range []string{"menu-a", "menu-b"} {
		if _, err := sr.CLI(ctx, "image", "import", image, BusyboxRootTree(t, menuInit(image))); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("bios_default_image", func(t *testing.T) { menuDefaultImage(ctx, t, lab, sr, tp) })
	t.Run("uefi_local_disk", func(t *testing.T) { menuLocalDisk(ctx, t, lab, sr, tpU) })
}

// menuDefaultImage: a BIOS machine's menu of two images (and the local
// disk, which it cannot boot) takes the default image on timeout.
func menuDefaultImage(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, tp *TPM) {
	const name = "vm-menu"
	vm := startPXE(ctx, t, lab, name, BIOS, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	for _, args := range [][]string{
		{"machine", "set-root", id, "--kind", "volatile", "--via", "iscsi", "--image", "menu-a"},
		{"machine", "menu", "set", id, "--image", "menu-a", "--image", "menu-b", "--local-disk", "--default", "menu-b", "--timeout", "3s"},
		{"machine", "menu", "show", id},
		approveArgs(id, name, BIOS),
	} {
		if _, err := sr.CLI(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	expectLines(ctx, t, vm,
		`sealroot: boot menu \(type a number and Enter; default in 3s\):`,
		`sealroot:    1\) menu-a$`,
		`sealroot:  \* 2\) menu-b$`,
		`sealroot:    -  local disk: not available on this BIOS machine`,
		`sealroot: menu: booting menu-b \(default, timeout\)`,
		`root: image=menu-b$`,
	)
}

// menuLocalDisk: a UEFI machine with a disk takes the menu's default, the
// local disk: the server answers local-disk, the agent sets BootNext to
// the disk's boot entry and reboots (QEMU runs with -no-reboot, so the
// VM ends there), and the firmware's variable store holds BootNext.
func menuLocalDisk(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, tp *TPM) {
	const name = "vm-menu-uefi"
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := lab.NewVM(t, VMOptions{Name: name, Firmware: UEFI, TPM: tp, PXE: true, ExtraArgs: []string{
		"-drive", "if=none,id=disk0,format=raw,file=" + disk,
		"-device", "virtio-blk-pci,drive=disk0,bootindex=2",
	}})
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	for _, args := range [][]string{
		{"machine", "set-root", id, "--kind", "volatile", "--via", "iscsi", "--image", "menu-a"},
		{"machine", "menu", "set", id, "--image", "menu-a", "--local-disk", "--default", "local-disk", "--timeout", "3s"},
		approveArgs(id, name, UEFI),
	} {
		if _, err := sr.CLI(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	m := expectBoot(ctx, t, vm, `^(?:sealroot: (?:boot failed|\[FAILED\]) (.*)|sealroot: menu: booting local disk \(default, timeout\))`)
	if m[1] != "" {
		t.Fatalf("agent failed: %s", m[1])
	}
	m = expectBoot(ctx, t, vm, `^(?:sealroot: (?:boot failed|\[FAILED\]) (.*)|sealroot: local disk: BootNext set to Boot([0-9A-F]{4}) \((.*)\); rebooting)`)
	if m[1] != "" {
		t.Fatalf("agent failed: %s", m[1])
	}
	num, desc := m[2], m[3]
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("VM did not reboot (exit): %v", err)
	}
	img, err := os.ReadFile(vm.varsPath())
	if err != nil {
		t.Fatal(err)
	}
	vars, err := ReadOVMFVars(img)
	if err != nil {
		t.Fatal(err)
	}
	var next, opt []byte
	for _, v := range vars {
		switch {
		case v.GUID != bootnext.GlobalVariable:
		case v.Name == "BootNext":
			next = v.Data
		case v.Name == "Boot"+num:
			opt = v.Data
		}
	}
	want, _ := strconv.ParseUint(num, 16, 16)
	if len(next) != 2 || uint64(binary.LittleEndian.Uint16(next)) != want {
		t.Fatalf("BootNext in the firmware's store = % x, want Boot%s", next, num)
	}
	e, err := bootnext.ParseLoadOption(opt)
	if err != nil || !e.Local || e.Description != desc {
		t.Fatalf("Boot%s = %+v (%v), want the local disk %q", num, e, err, desc)
	}
	t.Logf("BootNext = Boot%s %q in the firmware's variable store", num, desc)

	// The disk is blank: the firmware cannot boot it and falls back to
	// the network (its attempt measured: the boot needs re-approval).
	// The agent sees its local-disk boot came back
	// (bootnext.Check), says so, and takes the next entry instead of
	// sending the machine to its disk again (no reboot loop).
	again := lab.NewVM(t, VMOptions{Name: name + "-again", Firmware: UEFI, TPM: tp, PXE: true, ExtraArgs: []string{
		"-drive", "if=none,id=disk0,format=raw,file=" + disk,
		"-device", "virtio-blk-pci,drive=disk0,bootindex=2",
	}})
	if err := os.WriteFile(again.varsPath(), img, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := again.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The firmware's failed attempt at the disk is in the event log (PCR
	// 4): a changed state, approved again by the operator.
	expectBoot(ctx, t, again, `sealroot: needs re-approval: machine `+id)
	if _, err := sr.CLI(ctx, approveArgs(id, name, UEFI)...); err != nil {
		t.Fatal(err)
	}
	expectLines(ctx, t, again,
		`sealroot:  \* 1\) menu-a$`,
		`sealroot:    2\) local disk \(not taken by default this boot\)$`,
		`sealroot: menu: the default, local disk, did not boot last time: sent to Boot`+num+` .* ago, back through the network: the local-disk boot came back through the network$`,
		`sealroot: menu: booting menu-a \(default, timeout\)`,
		`root: image=menu-a$`,
	)
}
