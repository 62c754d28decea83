package vmtest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/initramfs"
)

// TestConsoles boots a machine whose command line names two consoles of
// different drivers, as a NUC's "console=ttyS0 console=tty0" does: a
// virtio console (hvc0) stands in for the screen, since the kernel
// drives one serial console only. The agent's status lines, the approval
// fingerprint among them, reach both; hvc0 appears only once
// virtio_console loads, so this also proves the agent picks up a console
// registered after it started. The operator then finds the machine in
// `machine list --pending` with its MAC and SMBIOS vendor and approves it
// by an 8-digit fingerprint prefix.
func TestConsoles(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{})
	// ttyS0 last: it is /dev/console, which the harness reads.
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, Cmdline: "console=hvc0 console=ttyS0 panic=10"})
	if err := buildConsoleInitramfs(ctx, t, filepath.Join(sr.ArtifactsDir(), "initramfs.cpio.gz")); err != nil {
		t.Fatal(err)
	}
	screen := filepath.Join(t.TempDir(), "hvc0.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(screen)
			t.Logf("second console (hvc0), %d bytes:\n%s", len(b), b)
		}
	})
	vm := lab.NewVM(t, VMOptions{Name: "vm", Firmware: UEFI, TPM: tp, PXE: true, ExtraArgs: []string{
		"-device", "virtio-serial-pci", "-chardev", "file,id=screen,path=" + screen, "-device", "virtconsole,chardev=screen"}})
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
			t.Fatalf("the second console never showed %q", want)
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

// buildConsoleInitramfs writes the shared build's initramfs again to out
// with virtio_console shipped and required by the agent.
func buildConsoleInitramfs(ctx context.Context, t *testing.T, out string) error {
	b := buildSealroot(ctx, t)
	k, err := initramfs.FetchKernel(ctx, CacheDir(t))
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(b.pki, "ca.crt"))
	if err != nil {
		return err
	}
	cfg, err := json.Marshal(map[string]any{
		"servers":     []string{SealrootIP + ":" + SealrootAttestPort},
		"server_name": SealrootName,
		"ca_pem":      string(ca),
		"modules":     []string{"virtio_console"},
	})
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	_, err = initramfs.Build(ctx, initramfs.Options{
		AgentBinary:   filepath.Join(b.dir, "sealroot-agent"),
		InitBinary:    filepath.Join(b.dir, "sealroot-init"),
		ModulesRoot:   k.ModulesRoot,
		KernelVersion: k.Version,
		Modules:       append(initramfs.DefaultModules(), "virtio_console"),
		AgentConfig:   cfg,
		Compression:   "gzip",
	}, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
