package vmtest

import (
	"context"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/secureboot"
	"github.com/sealroot/sealroot/uki"
)

// TestShimMOKHTTPBoot boots the shim chain with Secure Boot on and only
// the Microsoft keys in the firmware (OVMF_CODE_4M.secboot.fd +
// OVMF_VARS_4M.ms.fd), by HTTP boot: Debian's Microsoft-signed shim ->
// the UKI signed by the owner key, served as grubx64.efi -> the agent
// attests to a server requiring Secure Boot. The owner certificate is a
// MOK: MokList is written into the varstore with the attributes shim
// requires (as MokManager leaves it after `mokutil --import owner.der`
// and a reboot; MokManager's confirmation is a person at the console).
// Without the MOK shim refuses the UKI.
func TestShimMOKHTTPBoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", "sbsign", "openssl", uki.DefaultStub, OVMFCodeSecboot, OVMFVarsMS, ShimSigned, SnakeoilKey, SnakeoilCert)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "shim-lab"})
	startSealroot(ctx, t, lab, SealrootOptions{
		TPMs: []*TPM{tp}, UKI: true, HTTPBoot: true, SignUKI: true, Shim: true,
		Extra: map[string]any{"require_secure_boot": true},
	})
	owner, err := predict.ReadCertificate(SnakeoilCert) // the owner certificate SignUKI signs with
	if err != nil {
		t.Fatal(err)
	}
	mok, err := secureboot.SignatureList(owner.Raw)
	if err != nil {
		t.Fatal(err)
	}
	vmOpts := VMOptions{Firmware: UEFI, SecureBoot: true, MicrosoftKeys: true, TPM: tp, NativePXE: true, MemoryMB: 1024, ExtraArgs: OVMFNoPXE}

	t.Run("owner_key_as_mok_boots_and_attests", func(t *testing.T) {
		o := vmOpts
		o.Name = "vm-shim-mok"
		vm := lab.NewVM(t, o)
		if err := AddOVMFVar(vm.varsPath(), GUIDShimLock, "MokList", MokListAttributes, mok); err != nil {
			t.Fatal(err)
		}
		start(ctx, t, vm)
		expectBoot(ctx, t, vm, `Command line: `+defaultCmdline)
		expectBoot(ctx, t, vm, rePending.String())
		vm.Kill()
		vm.LogTimings()
	})

	t.Run("no_mok_refused_by_shim", func(t *testing.T) {
		o := vmOpts
		o.Name = "vm-shim-nomok"
		vm := lab.NewVM(t, o)
		start(ctx, t, vm)
		m := expectBoot(ctx, t, vm, `(Verification failed|Security Violation|Access Denied)|(Command line: .*)`)
		vm.Kill()
		if m[1] == "" {
			t.Fatalf("shim started the UKI without the owner key enrolled: %s", m[2])
		}
		t.Logf("refused: %s", m[1])
	})
}
