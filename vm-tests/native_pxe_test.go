package vmtest

import (
	"context"
	"testing"
	"time"
)

// TestNativePXE boots OVMF with its own PXE client (virtio NIC without the
// iPXE option ROM, as a real UEFI machine without iPXE firmware) from
// sealroot alone: OVMF's DHCP must accept sealroot's full-DHCP offer and
// fetch ipxe.efi over sealroot's TFTP, iPXE then fetches boot.ipxe over
// HTTP and the agent comes up and waits for approval.
func TestNativePXE(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{})
	startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}})

	vm := lab.NewVM(t, VMOptions{Name: "vm-native", Firmware: UEFI, TPM: tp, NativePXE: true})
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// OVMF prints PXE-Exx when it gives up on the network boot.
	m := expectBoot(ctx, t, vm, `(iPXE \S+ -- Open Source)|(PXE-E\d+.*)`)
	if m[1] == "" {
		t.Fatalf("OVMF's PXE client did not chain into iPXE: %s", m[2])
	}
	expectBoot(ctx, t, vm, `boot\.ipxe`)
	expectBoot(ctx, t, vm, rePending.String())
	vm.Kill()
	vm.LogTimings()
}
