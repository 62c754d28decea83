package vmtest

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestDirectBoot boots Debian's kernel with the hello initramfs under
// SeaBIOS and OVMF, each with a swtpm, and checks the guest sees the TPM
// (and, under OVMF, a non-empty firmware event log).
func TestDirectBoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	kernel := Kernel(ctx, t)
	initrd := HelloInitramfs(ctx, t)
	lab := NewLab(t, LabOptions{})

	tests := []struct {
		name        string
		fw          Firmware
		wantLogSize bool // firmware event log must be non-empty
	}{
		{"seabios", BIOS, false},
		{"ovmf", UEFI, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm := lab.NewVM(t, VMOptions{
				Name: tc.name, Firmware: tc.fw, TPM: NewTPM(t),
				Kernel: kernel, Initrd: initrd,
			})
			if err := vm.Start(ctx); err != nil {
				t.Fatal(err)
			}
			mustExpect(ctx, t, vm, `sealroot: hello from init`)
			if m := mustExpect(ctx, t, vm, `tpm /dev/tpmrm0 present=(\w+)`); m[1] != "true" {
				t.Errorf("guest /dev/tpmrm0 present = %s, want true", m[1])
			}
			m := mustExpect(ctx, t, vm, `eventlog bytes=(-?\d+)`)
			size, _ := strconv.Atoi(m[1])
			if tc.wantLogSize && size <= 0 {
				t.Errorf("firmware event log size = %d, want > 0", size)
			}
			mustExpect(ctx, t, vm, `sealroot: powering off`)
			if err := vm.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			vm.LogTimings()
			tm := vm.Timings()
			for _, k := range []string{MarkIPXE, MarkKernel, MarkExit, StagePrefix + "mount"} {
				if _, ok := tm[k]; !ok {
					t.Errorf("Timings()[%q] missing, got %v", k, tm)
				}
			}
		})
	}
}

func mustExpect(ctx context.Context, t *testing.T, vm *VM, re string) []string {
	t.Helper()
	m, err := vm.Expect(ctx, regexp.MustCompile(re))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
