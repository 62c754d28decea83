package bootnext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// A local-disk boot that cannot happen
//
// The boot menu's "local disk" sets BootNext and reboots. When the
// firmware cannot boot that entry (an empty or broken disk, a firmware
// that ignores BootNext), it falls back to BootOrder, which starts with
// the network: sealroot's menu comes back with the same default, and a
// machine left alone would reboot for ever. Check tells the menu, before
// it is shown, whether the local disk can be booted and whether it may
// be the default taken on timeout:
//
//   - Missing: there is no active Boot#### entry besides the network and
//     firmware applications, or no efivarfs. The entry is not available.
//   - CameBack: BootNext still names the local disk (the firmware booted
//     the network instead of it), or the agent's own mark says it sent
//     the machine to its disk less than ReturnWindow ago and the machine
//     came back through the network. A person may still choose the entry;
//     it is never taken on timeout.
//
// The mark is an EFI variable of sealroot's own vendor GUID
// (SealrootLocalDisk-MarkGUID), set by Mark just before the reboot and
// removed by Check. A local system that reboots through the network
// within ReturnWindow also counts as a return: the menu then waits for a
// person, or takes its next entry, once.

// MarkGUID is the vendor GUID of sealroot's own EFI variable.
const MarkGUID = "0b1e6a2c-5ea1-4f0e-9d3a-7c1b2f9e4d61"

const markName = "SealrootLocalDisk"

// ReturnWindow is how soon after Mark a netboot counts as the local-disk
// boot coming back: a firmware that fails to boot a disk is back within a
// minute; a local system that ran longer than this is not taken for one.
const ReturnWindow = 5 * time.Minute

// Errors Check reports.
var (
	// ErrNotHonoured means BootNext still names the local disk: the
	// firmware booted the network instead.
	ErrNotHonoured = errors.New("the firmware did not boot BootNext")
	// ErrCameBack means the machine came back through the network soon
	// after the agent sent it to its local disk.
	ErrCameBack = errors.New("the local-disk boot came back through the network")
)

// Readiness is what Check found of the local disk.
type Readiness struct {
	Entry Entry // the local-disk entry, when Missing is nil
	// Missing says why there is no local disk to boot (ErrNoLocalDisk,
	// or no efivarfs); nil when there is one.
	Missing error
	// CameBack says why the local disk must not be the default this
	// boot (wrapping ErrNotHonoured or ErrCameBack); nil when it may.
	CameBack error
}

// Check looks at the local disk before the menu is shown (see above) and
// removes the agent's mark, so that one return keeps the local disk from
// being the default for one boot only. now is the time of the check.
func Check(dir string, now time.Time) Readiness {
	var r Readiness
	r.Entry, r.Missing = LocalDisk(dir)
	sent, sentTo, marked := takeMark(dir)
	if r.Missing != nil {
		return r
	}
	if b, err := read(dir, "BootNext"); err == nil && len(b) == 2 && binary.LittleEndian.Uint16(b) == r.Entry.Number {
		r.CameBack = fmt.Errorf("BootNext still names Boot%04X (%s) on a network boot: %w", r.Entry.Number, r.Entry.Description, ErrNotHonoured)
		return r
	}
	if ago := now.Sub(sent); marked && ago >= -time.Minute && ago < ReturnWindow {
		r.CameBack = fmt.Errorf("sent to Boot%04X %s ago, back through the network: %w", sentTo, ago.Round(time.Second), ErrCameBack)
	}
	return r
}

// Mark records that the agent sends the machine to entry n at now; call
// it just before the reboot.
func Mark(dir string, n uint16, now time.Time) error {
	b := make([]byte, 4, 14)
	binary.LittleEndian.PutUint32(b, attrNonVolatile|attrBootService|attrRuntime)
	b = binary.LittleEndian.AppendUint64(b, uint64(now.Unix()))
	b = binary.LittleEndian.AppendUint16(b, n)
	return putVar(markPath(dir), b)
}

func markPath(dir string) string { return filepath.Join(dir, markName+"-"+MarkGUID) }

// takeMark reads and removes the mark; ok is false without one (or with
// one that is malformed).
func takeMark(dir string) (sent time.Time, entry uint16, ok bool) {
	path := markPath(dir)
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, 0, false
	}
	if makeMutable(path) == nil {
		os.Remove(path)
	}
	if len(b) != 14 {
		return time.Time{}, 0, false
	}
	return time.Unix(int64(binary.LittleEndian.Uint64(b[4:])), 0), binary.LittleEndian.Uint16(b[12:]), true
}

// putVar writes a variable (attributes and data) in one write, as
// efivarfs takes it, making an existing one mutable first.
func putVar(path string, b []byte) error {
	if err := makeMutable(path); err != nil {
		return fmt.Errorf("bootnext: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("bootnext: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("bootnext: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bootnext: %w", err)
	}
	return nil
}
