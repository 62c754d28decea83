package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/agent/bootnext"
	"github.com/sealroot/sealroot/agent/console"
	"github.com/sealroot/sealroot/agent/menu"
	"github.com/sealroot/sealroot/agent/sysinit"
	"github.com/sealroot/sealroot/wire"
)

// askMenu shows the server's boot menu on out (every console) and reads
// the choice from every active console; firmware is "uefi" or "bios".
func askMenu(out io.Writer, firmware string) func(ctx context.Context, m *wire.Menu) (string, error) {
	return func(ctx context.Context, m *wire.Menu) (string, error) {
		lines, stop := menu.Lines(openConsoles()...)
		defer stop()
		return menu.New(m, firmware).Ask(ctx, out, lines)
	}
}

// openConsoles opens the active consoles for reading; those that do not
// open are left out (the menu still times out to its default).
func openConsoles() []io.ReadCloser {
	names, _ := console.Active("/sys")
	var ins []io.ReadCloser
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join("/dev", n), os.O_RDONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
		if err == nil {
			ins = append(ins, f)
		}
	}
	return ins
}

// bootLocalDisk sets the firmware's BootNext to the local disk and
// reboots; it returns only on failure.
func bootLocalDisk(out io.Writer) error {
	err := unix.Mount("efivarfs", bootnext.DefaultDir, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("local disk: mount efivarfs: %w", err)
	}
	e, err := bootnext.SetLocalDisk(bootnext.DefaultDir)
	if err != nil {
		return fmt.Errorf("local disk: %w", err)
	}
	fmt.Fprintf(out, "sealroot: local disk: BootNext set to Boot%04X (%s); rebooting\n", e.Number, e.Description)
	return sysinit.Reboot()
}
