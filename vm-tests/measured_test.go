package vmtest

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/policy"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/uki"
)

// TestDefaultBootMeasured is issue 11 defect 0 with the server's default
// configuration and the default policy (pinned): sealroot never releases a
// credential on evidence that does not cover the initramfs that would
// receive it.
//
//   - bios_refused: legacy BIOS measures neither kernel nor initramfs.
//     Approving such a machine warns, and its boots are refused with check
//     boot-measurement, tampered or not.
//   - uefi_tampered_initramfs: a UEFI machine boots the UKI the server
//     builds by default and is approved. Then the served initramfs is
//     tampered with (an archive with one more file appended: the agent
//     runs unchanged, only a measurement can tell). Served as kernel+initramfs
//     (the old default, efi_boot "kernel"; what anyone answering on the
//     boot network can serve too) it boots with exactly the approved PCRs
//     outside PCRs 4, 9, 11 and 12 and is refused with check
//     boot-measurement; served in the rebuilt UKI (the default again) the
//     changed PCR 4 and .initrd measurement hold the machine for
//     re-approval. No credential either way.
func TestDefaultBootMeasured(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", uki.DefaultStub, OVMFCode, OVMFVars)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	tpmUEFI, tpmBIOS := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "measured-lab"})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tpmUEFI, tpmBIOS}})
	// The MAC is in the PXE boot option OVMF measures into PCR 1: keep it.
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x0c, 0x01}
	uefiVM := func(t *testing.T, name string) *VM {
		vm := lab.NewVM(t, VMOptions{Name: name, Firmware: UEFI, TPM: tpmUEFI, PXE: true, MAC: mac})
		start(ctx, t, vm)
		return vm
	}
	const warning = "warning: the server will refuse this machine's boots: " + policy.CheckBootMeasurement + ": the event log does not measure"

	t.Run("bios_refused", func(t *testing.T) {
		vm := startPXE(ctx, t, lab, "m-bios", BIOS, tpmBIOS)
		id := expectBoot(ctx, t, vm, rePending.String())[1]
		_, stderr, err := sr.CLIStderr(ctx, "machine", "approve", id, "--name", "m-bios")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, warning) {
			t.Errorf("approve of a BIOS boot: stderr %q, want %q", stderr, warning)
		}
		t.Logf("approve warned: %s", strings.TrimSpace(stderr))
		// The waiting agent retries and is refused.
		expectMeasurementRefusal(ctx, t, sr, vm, id, 0)
	})

	var id string // the approved UEFI machine
	t.Run("uefi_approved", func(t *testing.T) {
		vm := uefiVM(t, "m-uefi")
		// iPXE booted the UKI: the kernel's command line starts with its name.
		expectBoot(ctx, t, vm, `Command line: `+UKIName+` `+defaultCmdline)
		pending := expectBoot(ctx, t, vm, rePending.String())[1]
		_, stderr, err := sr.CLIStderr(ctx, "machine", "approve", pending, "--name", "m-uefi")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stderr, "warning") {
			t.Errorf("approve of a UKI boot warned: %q", stderr)
		}
		expectAttested(ctx, t, vm, "m-uefi", pending)
		id = pending
	})
	if id == "" {
		t.Fatal("no approved UEFI machine")
	}

	tamperInitramfs(t, sr)

	// The server restarts belong to t, not to a subtest, whose cleanup
	// would stop them.
	setEFIBoot(ctx, t, sr, lab, "kernel")
	t.Run("uefi_tampered_kernel_initrd_refused", func(t *testing.T) {
		vm := uefiVM(t, "m-uefi-kernel")
		expectMeasurementRefusal(ctx, t, sr, vm, id, 1)
	})

	setEFIBoot(ctx, t, sr, lab, "") // the default again: the server rebuilds the UKI
	t.Run("uefi_tampered_uki_held", func(t *testing.T) {
		vm := uefiVM(t, "m-uefi-tampered")
		expectBoot(ctx, t, vm, `sealroot: needs re-approval: machine `+id)
		vm.Kill()
		vm.LogTimings()
		mach, err := sr.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		changed := changedPCRsOf(mach.Diff)
		if mach.State != store.StateNeedsReapproval || mach.BootCount != 1 || !slices.Contains(changed, 4) || !slices.Contains(changed, 11) {
			t.Errorf("after the tampered UKI: state %s, boot_count %d, changed PCRs %v; want %s, 1, PCRs 4 and 11 among them",
				mach.State, mach.BootCount, changed, store.StateNeedsReapproval)
		}
		e := lastAudit(t, sr, id)
		if e.Outcome != "needs-reapproval" {
			t.Errorf("audit: %s %q, want needs-reapproval", e.Outcome, e.Reason)
		}
		t.Logf("audit: %s (%s): %s; changed PCRs %v", e.Outcome, e.Check, e.Reason, changed)
	})
}

// expectMeasurementRefusal waits for vm's agent to be refused with check
// boot-measurement and checks the audit entry and that machine id is still
// approved with bootCount boots.
func expectMeasurementRefusal(ctx context.Context, t *testing.T, sr *Sealroot, vm *VM, id string, bootCount uint64) {
	t.Helper()
	m := expectBoot(ctx, t, vm, reRefused)
	vm.Kill()
	vm.LogTimings()
	const reason = "does not measure the initramfs"
	if m[1] != policy.CheckBootMeasurement || !strings.Contains(m[2], reason) {
		t.Errorf("console: check %q reason %q, want %s: %s", m[1], m[2], policy.CheckBootMeasurement, reason)
	}
	t.Logf("console: check %q: %s", m[1], m[2])
	e := lastAudit(t, sr, id)
	if e.Outcome != "refused" || e.Check != policy.CheckBootMeasurement || !strings.Contains(e.Reason, reason) {
		t.Errorf("audit: %s %s %q, want refused by %s", e.Outcome, e.Check, e.Reason, policy.CheckBootMeasurement)
	}
	mach, err := sr.Machine(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if mach.State != store.StateApproved || mach.BootCount != bootCount {
		t.Errorf("after the refusal: state %s, boot_count %d; want %s, %d", mach.State, mach.BootCount, store.StateApproved, bootCount)
	}
}

// tamperInitramfs appends a small archive (one extra file) to the
// initramfs the server serves: the kernel unpacks it after the original,
// whatever the original's compression, and the agent runs unchanged, so
// only a measurement can tell.
func tamperInitramfs(t *testing.T, sr *Sealroot) {
	t.Helper()
	path := filepath.Join(sr.ArtifactsDir(), "initramfs.cpio.gz")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = appendImageVersion(b, "tampered"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("tampered with the served initramfs %s", path)
}

// setEFIBoot sets boot.efi_boot in the server configuration (removes it
// when mode is "") and restarts the server.
func setEFIBoot(ctx context.Context, t testing.TB, sr *Sealroot, lab *Lab, mode string) {
	t.Helper()
	raw, err := os.ReadFile(sr.configPath())
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	boot := cfg["boot"].(map[string]any)
	if mode == "" {
		delete(boot, "efi_boot")
	} else {
		boot["efi_boot"] = mode
	}
	if raw, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sr.configPath(), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.Restart(ctx, t, lab); err != nil {
		t.Fatal(err)
	}
	t.Logf("server restarted with boot.efi_boot %q", mode)
}
