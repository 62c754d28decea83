package vmtest

import (
	"context"
	"path/filepath"
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
	t.Parallel()
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

// TestSecureBootHTTPBoot boots with UEFI Secure Boot on (Debian's snakeoil
// OVMF, whose db holds the key sealroot signs with), by HTTP boot alone:
// the signed UKI boots and attests to a server that requires Secure Boot
// (PCR 7 SecureBoot = 1 in the verified event log); the same UKI unsigned
// is refused by the firmware.
func TestSecureBootHTTPBoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", "sbsign", "openssl", uki.DefaultStub, OVMFCodeSnakeoil, OVMFVarsSnakeoil, SnakeoilKey, SnakeoilCert)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "sb-lab"})
	sr := startSealroot(ctx, t, lab, SealrootOptions{
		TPMs: []*TPM{tp}, UKI: true, HTTPBoot: true, SignUKI: true,
		Extra: map[string]any{"require_secure_boot": true},
	})
	vmOpts := VMOptions{Firmware: UEFI, SecureBoot: true, TPM: tp, NativePXE: true, MemoryMB: 1024, ExtraArgs: OVMFNoPXE}

	t.Run("signed_uki_boots_and_attests", func(t *testing.T) {
		o := vmOpts
		o.Name = "vm-sb-signed"
		vm := lab.NewVM(t, o)
		start(ctx, t, vm)
		expectBoot(ctx, t, vm, `Command line: `+defaultCmdline)
		expectBoot(ctx, t, vm, rePending.String())
		vm.Kill()
		vm.LogTimings()
	})

	t.Run("unsigned_uki_refused_by_firmware", func(t *testing.T) {
		initrd, err := SealrootInitramfs()
		if err != nil {
			t.Fatal(err)
		}
		if err := BuildUKI(shared.vmlinuz, initrd, defaultCmdline, filepath.Join(sr.ArtifactsDir(), UKIName)); err != nil {
			t.Fatal(err)
		}
		o := vmOpts
		o.Name = "vm-sb-unsigned"
		vm := lab.NewVM(t, o)
		start(ctx, t, vm)
		m := expectBoot(ctx, t, vm, `(Access Denied|Security Violation)|(Command line: .*)`)
		vm.Kill()
		if m[1] == "" {
			t.Fatalf("the firmware started the unsigned UKI: %s", m[2])
		}
	})
}
