package vmtest

import (
	"context"
	"errors"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestVMFailures checks the harness's failure paths: a QEMU that cannot
// start its guest, a guest that never prints the expected line, and that
// cleanup leaves no QEMU or swtpm behind.
func TestVMFailures(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter")
	lab := NewLab(t, LabOptions{Name: "vmtest-fail-lab"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("qemu_exits", func(t *testing.T) {
		vm := lab.NewVM(t, VMOptions{Name: "bad", Kernel: "/nonexistent/vmlinuz"})
		if err := vm.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := vm.Expect(ctx, regexp.MustCompile(`Linux version`)); !errors.Is(err, ErrExited) {
			t.Errorf("Expect on a VM whose QEMU failed = %v, want ErrExited", err)
		}
		if err := vm.Wait(ctx); err == nil {
			t.Error("Wait on a VM whose QEMU failed = nil, want an exit error")
		}
		if err := vm.Start(ctx); err == nil {
			t.Error("second Start = nil, want an error (a VM boots once)")
		}
	})

	t.Run("guest_silent_then_killed", func(t *testing.T) {
		// SeaBIOS with nothing to boot: it loops, the test gives up.
		vm := lab.NewVM(t, VMOptions{Name: "idle", TPM: NewTPM(t)})
		if err := vm.Start(ctx); err != nil {
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
		defer cancelShort()
		if _, err := vm.Expect(short, regexp.MustCompile(`never printed`)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Expect of a missing line = %v, want context.DeadlineExceeded", err)
		}
		qemu, swtpm := vm.qemu.cmd.Process.Pid, vm.swtpm.cmd.Process.Pid
		vm.Kill()
		vm.Kill() // safe twice
		for name, pgid := range map[string]int{"qemu": qemu, "swtpm": swtpm} {
			if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s process group %d after Kill: kill(0) = %v, want ESRCH", name, pgid, err)
			}
		}
		if _, ok := vm.Timings()[MarkExit]; !ok {
			t.Errorf("Timings() after Kill = %v, want an %q mark", vm.Timings(), MarkExit)
		}
	})
}
