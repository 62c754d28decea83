package vmtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConsoles boots a machine whose command line names two consoles,
// the second serial port standing in for a NUC's screen: the agent's
// status lines, the approval fingerprint among them, reach both. The
// operator then finds the machine in `machine list --pending` with its
// MAC and SMBIOS product, and approves it by an 8-digit fingerprint
// prefix.
func TestConsoles(t *testing.T) {
	SkipUnlessEnabled(t)
	RequireTools(t, QEMU, "swtpm", "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{})
	// ttyS0 last: it is /dev/console, which the harness reads.
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, Cmdline: "console=ttyS1 console=ttyS0 panic=10"})
	screen := filepath.Join(t.TempDir(), "ttyS1.log")
	vm := lab.NewVM(t, VMOptions{Name: "vm", Firmware: UEFI, TPM: tp, PXE: true, ExtraArgs: []string{"-serial", "file:" + screen}})
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	want := "waiting for approval: machine fingerprint " + id
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(screen)
		if strings.Contains(string(b), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second console never showed %q; it got:\n%s", want, b)
		}
		time.Sleep(200 * time.Millisecond)
	}

	out, err := sr.CLI(ctx, "machine", "list", "--pending")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("machine list --pending:\n%s", out)
	if !strings.Contains(out, id[:16]) || !strings.Contains(out, "52:54:00:") || !strings.Contains(out, "QEMU") {
		t.Errorf("machine list --pending lacks the machine's fingerprint, MAC or vendor:\n%s", out)
	}
	if out, err := sr.CLI(ctx, "machine", "approve", id[:8]); err != nil {
		t.Fatalf("approve by prefix: %v\n%s", err, out)
	}
	expectBoot(ctx, t, vm, reAttested.String())
}
