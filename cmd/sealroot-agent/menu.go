package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/agent/bootnext"
	"github.com/sealroot/sealroot/agent/console"
	"github.com/sealroot/sealroot/agent/menu"
	"github.com/sealroot/sealroot/agent/sysinit"
	"github.com/sealroot/sealroot/wire"
)

// askMenu shows the server's boot menu on out (every console) and reads
// the choice from every active console; firmware is "uefi" or "bios". On
// UEFI it first checks the local disk (bootnext.Check): a machine whose
// local-disk boot cannot happen, or came back through the network, does
// not take it on timeout, and says so on out (and so in its boot report).
func askMenu(out io.Writer, firmware string) func(ctx context.Context, m *wire.Menu) (string, error) {
	return func(ctx context.Context, m *wire.Menu) (string, error) {
		var disk menu.LocalDisk
		if firmware == "uefi" && m.Entry(wire.EntryLocalDiskID) != nil {
			disk = checkLocalDisk()
		}
		lines, stop := menu.Lines(openConsoles()...)
		defer stop()
		return menu.New(m, firmware, disk).Ask(ctx, out, lines)
	}
}

// checkLocalDisk is bootnext.Check of the firmware's variables.
func checkLocalDisk() menu.LocalDisk {
	if err := mountEFIVars(); err != nil {
		return menu.LocalDisk{Missing: err}
	}
	r := bootnext.Check(bootnext.DefaultDir, time.Now())
	return menu.LocalDisk{Missing: r.Missing, CameBack: r.CameBack}
}

func mountEFIVars() error {
	err := unix.Mount("efivarfs", bootnext.DefaultDir, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount efivarfs: %w", err)
	}
	return nil
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

// bootLocalDisk sets the firmware's BootNext to the local disk, marks
// that it did (bootnext.Mark: a boot that comes back through the network
// soon does not take the local disk by default again) and reboots; it
// returns only on failure.
func bootLocalDisk(out io.Writer) error {
	if err := mountEFIVars(); err != nil {
		return fmt.Errorf("local disk: %w", err)
	}
	e, err := bootnext.SetLocalDisk(bootnext.DefaultDir)
	if err != nil {
		return fmt.Errorf("local disk: %w", err)
	}
	if err := bootnext.Mark(bootnext.DefaultDir, e.Number, time.Now()); err != nil {
		fmt.Fprintf(out, "sealroot: local disk: %v (a boot that comes back will not be recognised)\n", err)
	}
	fmt.Fprintf(out, "sealroot: local disk: BootNext set to Boot%04X (%s); rebooting\n", e.Number, e.Description)
	return sysinit.Reboot()
}
