package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/agent/bootnext"
	"github.com/sealroot/sealroot/agent/coninput"
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
		ins, closeAll := menuInputs()
		defer closeAll()
		lines, stop := coninput.Lines(ins...)
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

// menuInputs opens the active consoles for the menu (package
// coninput, as the login); none opening leaves the menu to time out to
// its default.
func menuInputs() (ins []coninput.Input, closeAll func()) {
	files, err := coninput.Open("/sys", "/dev")
	if err != nil {
		return nil, func() {}
	}
	for _, f := range files {
		ins = append(ins, f)
	}
	return ins, func() { coninput.CloseAll(files) }
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
