package vmtest

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/uki"
)

// TestSecureBootPredictedPCR7 boots the signed UKI by HTTP boot with
// Secure Boot on (snakeoil OVMF, as TestSecureBootHTTPBoot) to a server
// that predicts PCR 7 from the variables of the firmware's varstore
// (boot.secure_boot_vars, as exported with efi-readvar) and the owner
// certificate:
//
//   - the prediction equals the PCR 7 the firmware measured and quoted;
//   - after the site's keys change (the db entry's owner GUID rewritten in
//     the machine's varstore) and the operator exports them again, the
//     machine, approved under policy "predicted", is released with no
//     learning boot and no re-approval: its PCR 7 differs from the one
//     approved, and equals the new prediction;
//   - a machine whose keys differ from the exported ones needs
//     re-approval, with a PCR 7 diff.
func TestSecureBootPredictedPCR7(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", "sbsign", "openssl", uki.DefaultStub, OVMFCodeSnakeoil, OVMFVarsSnakeoil, SnakeoilKey, SnakeoilCert)
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	varsDir := filepath.Join(t.TempDir(), "secureboot-vars")
	if err := WriteSecureBootVars(varsDir, OVMFVarsSnakeoil); err != nil {
		t.Fatal(err)
	}
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "sb-pcr7"})
	sr := startSealroot(ctx, t, lab, SealrootOptions{
		TPMs: []*TPM{tp}, UKI: true, HTTPBoot: true, SignUKI: true, SecureBootVars: varsDir,
		Extra: map[string]any{"require_secure_boot": true},
	})
	// One MAC for every boot: the same machine (OVMF's boot options, in
	// PCR 1, name the NIC by its MAC).
	vmOpts := VMOptions{Firmware: UEFI, SecureBoot: true, TPM: tp, NativePXE: true, MemoryMB: 1024, ExtraArgs: OVMFNoPXE,
		MAC: net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x07, 0x07}}
	signer, err := predict.ReadCertificate(SnakeoilCert)
	if err != nil {
		t.Fatal(err)
	}
	predictPCR7 := func(t *testing.T) *predict.SecureBootPrediction {
		t.Helper()
		vars, err := predict.ReadSecureBootVars(varsDir)
		if err != nil {
			t.Fatal(err)
		}
		p, err := predict.PredictPCR7(vars, []*x509.Certificate{signer})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	var id string
	t.Run("prediction_matches_measured_pcr7", func(t *testing.T) {
		o := vmOpts
		o.Name = "vm-sb-pcr7"
		vm := lab.NewVM(t, o)
		start(ctx, t, vm)
		id = expectBoot(ctx, t, vm, rePending.String())[1]
		mach, err := sr.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := predictPCR7(t)
		got := mach.Reported.PCRs[predict.PCRSecureBootPolicy]
		for _, e := range mach.Reported.Events {
			if e.PCR == predict.PCRSecureBootPolicy {
				t.Logf("measured PCR 7 #%d %s sha256:%x %s", e.Sequence, e.TypeName, e.Digest, e.Description)
			}
		}
		for _, e := range want.Events {
			t.Logf("predicted PCR 7 %s sha256:%x", e.Name, e.Digest)
		}
		if !bytes.Equal(got, want.PCR7) {
			t.Fatalf("measured PCR 7 %x, predicted %x", got, want.PCR7)
		}
		t.Logf("PCR 7 %x as predicted from %s and the owner certificate", got, varsDir)
		if _, err := sr.CLI(ctx, "machine", "approve", id, "--name", "sb-pcr7", "--policy", "predicted"); err != nil {
			t.Fatal(err)
		}
		expectBoot(ctx, t, vm, reAttested.String())
		vm.Kill()
		vm.LogTimings()
	})
	if id == "" {
		t.Fatal("no approved machine")
	}

	// rotatedVM is a VM whose varstore's db entry has another owner GUID,
	// as after a site re-enrolled its db: the same certificate still
	// verifies the UKI, but db and the authority event differ.
	rotatedVM := func(t *testing.T, name string) *VM {
		o := vmOpts
		o.Name = name
		vm := lab.NewVM(t, o)
		if err := rotateDBOwner(vm.varsPath()); err != nil {
			t.Fatal(err)
		}
		return vm
	}
	original, err := os.ReadFile(filepath.Join(varsDir, predict.DBFile))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("keys_changed_and_exported_released_without_reapproval", func(t *testing.T) {
		vm := rotatedVM(t, "vm-sb-rotated")
		if err := WriteSecureBootVars(varsDir, vm.varsPath()); err != nil {
			t.Fatal(err)
		}
		start(ctx, t, vm)
		expectBoot(ctx, t, vm, `sealroot: attested as sb-pcr7 \(`+id+`\)`)
		vm.Kill()
		mach, err := sr.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if mach.State != store.StateApproved || mach.BootCount != 2 {
			t.Errorf("after the key change: state %s, boot_count %d; want %s, 2", mach.State, mach.BootCount, store.StateApproved)
		}
		if approved := mach.Approved.PCRs[predict.PCRSecureBootPolicy]; bytes.Equal(approved, predictPCR7(t).PCR7) {
			t.Errorf("the approved PCR 7 equals the new prediction: the key change changed nothing")
		}
	})

	t.Run("keys_differ_from_export_need_reapproval", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(varsDir, predict.DBFile), original, 0o644); err != nil {
			t.Fatal(err)
		}
		vm := rotatedVM(t, "vm-sb-unexported")
		start(ctx, t, vm)
		expectBoot(ctx, t, vm, `sealroot: needs re-approval: machine `+id)
		vm.Kill()
		mach, err := sr.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		changed := changedPCRsOf(mach.Diff)
		if mach.State != store.StateNeedsReapproval || !slices.Equal(changed, []int{7}) || !strings.Contains(mach.Diff, "predicted db") {
			t.Errorf("state %s, changed PCRs %v, diff:\n%s\nwant %s, PCR 7 only, against the predicted db event", mach.State, changed, mach.Diff, store.StateNeedsReapproval)
		}
		t.Logf("diff:\n%s", mach.Diff)
	})
}

// rotateDBOwner rewrites, in the OVMF varstore at path, the SignatureOwner
// GUID of db's first entry (EFI_SIGNATURE_LIST header 28 bytes, then the
// entry's 16-byte owner): same size, same certificate.
func rotateDBOwner(path string) error {
	img, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	vars, err := ReadOVMFVars(img)
	if err != nil {
		return err
	}
	for _, v := range vars {
		if v.GUID == GUIDImageSecurityDatabase && v.Name == "db" {
			data := bytes.Clone(v.Data)
			for i := 28; i < 28+16; i++ {
				data[i] ^= 0x5a
			}
			return SetOVMFVar(path, GUIDImageSecurityDatabase, "db", data)
		}
	}
	return os.ErrNotExist
}
