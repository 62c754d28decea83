// Package menu shows the server's boot menu (wire.Menu) on the machine's
// console(s) and reads the choice: a number and Enter on any console
// before the timeout, else the default. The timeout is firm (it does not
// stop at the first key): the server waits for the choice only that long
// and a step more.
//
// Entries the machine cannot boot are shown as not available and never
// chosen: the local disk on a BIOS machine, which has no UEFI BootNext,
// or on a UEFI machine without a boot entry besides the network
// (LocalDisk.Missing).
//
// # A local disk that comes back
//
// A local disk the firmware could not boot last time (LocalDisk.CameBack,
// from bootnext.Check) may still be chosen by a person, but is never
// taken on timeout: the menu says why and takes its next entry instead,
// or, when there is none, waits for a person rather than reboot the
// machine for ever.
package menu

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// Menu is one menu being asked.
type Menu struct {
	m *wire.Menu
	// bios reports that the machine booted by BIOS: no local disk.
	bios bool
	disk LocalDisk
}

// LocalDisk is what the agent found of the firmware's local-disk entry
// (bootnext.Check); the zero value is a local disk that may be booted.
type LocalDisk struct {
	// Missing says why there is no local disk to boot; the entry is
	// then not available.
	Missing error
	// CameBack says why the local disk must not be taken on timeout
	// this boot; a person may still choose it.
	CameBack error
}

// New returns the menu m for a machine whose firmware is "uefi" or
// "bios" (agent/hints.Firmware) and whose local disk is disk (ignored
// on BIOS, which has none).
func New(m *wire.Menu, firmware string, disk LocalDisk) *Menu {
	return &Menu{m: m, bios: firmware != "uefi", disk: disk}
}

// available reports whether e can be booted on this machine.
func (mn *Menu) available(e wire.MenuEntry) bool {
	return e.Kind != wire.EntryLocalDisk || (!mn.bios && mn.disk.Missing == nil)
}

// defaultable reports whether e may be taken on timeout.
func (mn *Menu) defaultable(e wire.MenuEntry) bool {
	return mn.available(e) && (e.Kind != wire.EntryLocalDisk || mn.disk.CameBack == nil)
}

// Default is the entry taken on timeout: the server's default, or the
// first entry that may be taken when the default may not be here; ""
// when none may (the menu then waits for a person).
func (mn *Menu) Default() string {
	if e := mn.m.Entry(mn.m.Default); e != nil && mn.defaultable(*e) {
		return e.ID
	}
	for _, e := range mn.m.Entries {
		if mn.defaultable(e) {
			return e.ID
		}
	}
	return ""
}

// unavailable says why e is not available here.
func (mn *Menu) unavailable(e wire.MenuEntry) string {
	if mn.bios {
		return "not available on this BIOS machine (no UEFI BootNext)"
	}
	return fmt.Sprintf("not available: %v", mn.disk.Missing)
}

// Show writes the menu to w.
func (mn *Menu) Show(w io.Writer) {
	timeout := time.Duration(mn.m.TimeoutMillis) * time.Millisecond
	fmt.Fprintf(w, "sealroot: boot menu (type a number and Enter; default in %s):\n", timeout.Round(time.Second))
	def := mn.Default()
	for i, e := range mn.m.Entries {
		mark := " "
		if e.ID == def {
			mark = "*"
		}
		label := printable(e.Label)
		if !mn.available(e) {
			fmt.Fprintf(w, "sealroot:    -  %s: %s\n", label, mn.unavailable(e))
			continue
		}
		note := ""
		if !mn.defaultable(e) {
			note = " (not taken by default this boot)"
		}
		fmt.Fprintf(w, "sealroot:  %s %d) %s%s\n", mark, i+1, label, note)
	}
	if e := mn.m.Entry(mn.m.Default); e != nil && e.Kind == wire.EntryLocalDisk && !mn.bios {
		switch {
		case mn.disk.Missing != nil:
			fmt.Fprintf(w, "sealroot: menu: the default, local disk, cannot boot: %v\n", mn.disk.Missing)
		case mn.disk.CameBack != nil:
			fmt.Fprintf(w, "sealroot: menu: the default, local disk, did not boot last time: %v\n", mn.disk.CameBack)
		}
		if def == "" {
			fmt.Fprintf(w, "sealroot: menu: no other entry to take: waiting for a choice\n")
		}
	}
	if mn.m.NoLocalDisk {
		fmt.Fprintf(w, "sealroot:    -  local disk: not available on this BIOS machine (no UEFI BootNext)\n")
	}
}

// Pick returns the entry ID a typed line chooses, or "" for none.
func (mn *Menu) Pick(line string) string {
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || n < 1 || n > len(mn.m.Entries) {
		return ""
	}
	if e := mn.m.Entries[n-1]; mn.available(e) {
		return e.ID
	}
	return ""
}

// Ask shows the menu on w and returns the entry chosen by a line from
// lines before the timeout, else the default; it tells w which and why.
// Lines that choose nothing are answered on w and ignored.
func (mn *Menu) Ask(ctx context.Context, w io.Writer, lines <-chan string) (string, error) {
	mn.Show(w)
	t := time.NewTimer(time.Duration(mn.m.TimeoutMillis) * time.Millisecond)
	defer t.Stop()
	timeout := t.C
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-timeout:
			id := mn.Default()
			if id == "" {
				fmt.Fprintf(w, "sealroot: menu: timeout, but no entry may be taken by default: waiting for a choice\n")
				timeout = nil
				continue
			}
			fmt.Fprintf(w, "sealroot: menu: booting %s (default, timeout)\n", mn.label(id))
			return id, nil
		case line, ok := <-lines:
			if !ok {
				lines = nil // no console to read: wait for the timeout
				continue
			}
			if id := mn.Pick(line); id != "" {
				fmt.Fprintf(w, "sealroot: menu: booting %s (chosen)\n", mn.label(id))
				return id, nil
			}
			fmt.Fprintf(w, "sealroot: menu: %q is not an entry: type 1-%d and Enter\n", printable(strings.TrimSpace(line)), len(mn.m.Entries))
		}
	}
}

func (mn *Menu) label(id string) string {
	if e := mn.m.Entry(id); e != nil {
		return printable(e.Label)
	}
	return printable(id)
}

// printable drops control characters (a server is trusted, but a console
// is no place for escape sequences) and bounds the length.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}
