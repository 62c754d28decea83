package vmtest

import (
	"context"
	"testing"
	"time"
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

// TestBootMenu boots a machine whose boot menu offers two images (each a
// volatile root over that image) and the local disk, with a 3 s timeout
// and the second image as default: the agent shows the menu on the
// serial console, says the local disk is not available on this BIOS
// machine, takes the default when nobody types, and the server releases
// the root over the chosen image.
func TestBootMenu(t *testing.T) {
	SkipUnlessEnabled(t)
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, Extra: tunnelISCSIConfig})
	for _, image := range []string{"menu-a", "menu-b"} {
		if _, err := sr.CLI(ctx, "image", "import", image, BusyboxRootTree(t, menuInit(image))); err != nil {
			t.Fatal(err)
		}
	}
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
