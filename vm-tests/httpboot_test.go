package vmtest

import (
	"context"
	"testing"
	"time"

	"github.com/sealroot/sealroot/uki"
)

// TestFirmwareHTTPBoot boots OVMF by UEFI HTTP boot alone (Secure Boot
// off): no iPXE option ROM, OVMF's PXE boot options off, TFTP off. OVMF's
// HttpBootDxe sends DHCP with vendor class "HTTPClient", sealroot's full
// DHCP answers with the URL of uki.efi, the firmware downloads and starts
// it, and the agent in it attests and waits for approval.
func TestFirmwareHTTPBoot(t *testing.T) {
	SkipUnlessEnabled(t)
	RequireTools(t, QEMU, "swtpm", "nsenter", uki.DefaultStub, OVMFCode, OVMFVars)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "httpboot"})
	startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, UKI: true, HTTPBoot: true})

	vm := lab.NewVM(t, VMOptions{Name: "vm-httpboot", Firmware: UEFI, TPM: tp, NativePXE: true, MemoryMB: 1024, ExtraArgs: OVMFNoPXE})
	start(ctx, t, vm)
	// The kernel logs the UKI's built-in command line: no iPXE in between.
	expectBoot(ctx, t, vm, `Command line: `+defaultCmdline)
	expectBoot(ctx, t, vm, rePending.String())
	vm.Kill()
	vm.LogTimings()
}
