package vmtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/store"
)

// TestDemo is `make demo`: the first attested boot of one OVMF machine,
// narrated step by step for a reader of the test log.
func TestDemo(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	step := func(format string, args ...any) { t.Logf("==> "+format, args...) }

	step("building sealroot, the agent and its initramfs (once), manufacturing a software TPM")
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{})
	step("starting sealroot in lab namespace %s: full DHCP on %s, TFTP, HTTP boot, QUIC attestation on %s:%s",
		lab.NS.Name, lab.Bridge, SealrootIP, SealrootAttestPort)
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}})
	step("sealroot is up; admin socket %s", sr.Socket)

	step("booting VM through PXE (OVMF, swtpm); console lines follow as they come")
	vm := startPXE(ctx, t, lab, "vm", UEFI, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	step("the VM attested and waits for approval; fingerprint %s", id)
	out, err := sr.run(ctx, "machine", "list")
	if err != nil {
		t.Fatal(err)
	}
	step("sealroot machine list:\n%s", strings.TrimRight(out, "\n"))

	step("approving %s via: sealroot machine approve %s --name demo-vm", id, id)
	out, err = sr.CLI(ctx, "machine", "approve", id, "--name", "demo-vm")
	if err != nil {
		t.Fatal(err)
	}
	step("%s", strings.TrimSpace(out))

	m := expectBoot(ctx, t, vm, reAttested.String())
	step("credential unsealed inside the VM: attested as %s (%s)", m[1], m[2])
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("VM did not power off: %v", err)
	}
	step("the VM powered off")
	vm.LogTimings()

	mach, err := sr.Machine(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if mach.State != store.StateApproved || mach.BootCount != 1 {
		t.Errorf("machine %s: state %s, boot_count %d; want %s, 1", id, mach.State, mach.BootCount, store.StateApproved)
	}
	step("sealroot machine show %s: state %s, boots %d, EK certificate %d bytes", m[1], mach.State, mach.BootCount, len(mach.EKCert))
}
