package wire

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Boot menu. When a machine (or its group) may boot several roots, the
// server answers the agent's Evidence with a Menu instead of the
// Credential; the agent shows it on its console(s), takes the default
// when the timeout passes, and sends a Choice on the same attested
// stream. The server honours only a choice it offered: it answers with
// the Credential for the chosen image, a Status of state
// StateLocalDisk for the local disk, or an Error refusing the boot.
const (
	TypeMenu   Type = 10
	TypeChoice Type = 11
)

// Kinds of menu entries.
const (
	EntryImage     = "image"      // boot the machine's root over an image
	EntryLocalDisk = "local-disk" // set the firmware's BootNext to the local disk and reboot
)

// EntryLocalDiskID is the ID of the local-disk entry.
const EntryLocalDiskID = "local-disk"

// Limits of a menu.
const (
	MaxMenuEntries       = 16
	MaxEntryID           = 80
	maxEntryLabel        = 128
	MaxMenuTimeoutMillis = 3600 * 1000
)

// ImageEntryID is the ID of the menu entry that boots image name.
func ImageEntryID(name string) string { return EntryImage + ":" + name }

// MenuEntry is one line of a boot menu.
type MenuEntry struct {
	// ID is what a Choice names: ImageEntryID(name) or EntryLocalDiskID.
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Label string `json:"label"`
}

// Menu offers the agent the entries it may boot.
type Menu struct {
	Entries []MenuEntry `json:"entries"`
	// Default is the ID of the entry taken when TimeoutMillis passes
	// without a choice.
	Default       string `json:"default"`
	TimeoutMillis int64  `json:"timeout_ms"`
	// NoLocalDisk says the menu has the local disk but this machine
	// cannot boot it (BIOS: no BootNext), so the agent says so.
	NoLocalDisk bool `json:"no_local_disk,omitempty"`
}

// Choice is the entry chosen on the machine's console (or by timeout).
type Choice struct {
	ID string `json:"id"`
}

func (*Menu) Type() Type   { return TypeMenu }
func (*Choice) Type() Type { return TypeChoice }

// Entry returns the entry with the given ID, or nil.
func (m *Menu) Entry(id string) *MenuEntry {
	for i := range m.Entries {
		if m.Entries[i].ID == id {
			return &m.Entries[i]
		}
	}
	return nil
}

func (m *Menu) validate() error {
	if len(m.Entries) < 2 || len(m.Entries) > MaxMenuEntries {
		return fmt.Errorf("%d menu entries, want 2-%d", len(m.Entries), MaxMenuEntries)
	}
	seen := make(map[string]bool, len(m.Entries))
	for _, e := range m.Entries {
		if err := checkEntryID(e.ID); err != nil {
			return err
		}
		if seen[e.ID] {
			return fmt.Errorf("menu entry %q twice", e.ID)
		}
		seen[e.ID] = true
		switch {
		case e.Kind == EntryImage && strings.HasPrefix(e.ID, EntryImage+":"):
		case e.Kind == EntryLocalDisk && e.ID == EntryLocalDiskID:
		default:
			return fmt.Errorf("menu entry %q of kind %q", e.ID, e.Kind)
		}
		if err := checkPrintable("menu label", e.Label, maxEntryLabel); err != nil {
			return err
		}
	}
	if !seen[m.Default] {
		return fmt.Errorf("default %q is not a menu entry", m.Default)
	}
	if m.TimeoutMillis < 0 || m.TimeoutMillis > MaxMenuTimeoutMillis {
		return fmt.Errorf("timeout_ms %d", m.TimeoutMillis)
	}
	return nil
}

// CheckMenu reports whether m is a menu the agent accepts (the checks
// of decoding), for the server to check what it is about to offer.
func CheckMenu(m *Menu) error { return m.validate() }

func (c *Choice) validate() error { return checkEntryID(c.ID) }

func checkEntryID(id string) error {
	if id == "" {
		return fmt.Errorf("empty menu entry ID")
	}
	return checkPrintable("menu entry ID", id, MaxEntryID)
}

// checkPrintable refuses text over max bytes, invalid UTF-8 or with
// control characters: it is shown on a console.
func checkPrintable(what, s string, max int) error {
	if len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("%s of %d bytes", what, len(s))
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("control character in %s", what)
		}
	}
	return nil
}
