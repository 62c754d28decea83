// Package bootnext sets the UEFI firmware's one-time boot entry, the
// BootNext variable (UEFI 2.10, section 3.3 "Globally Defined
// Variables"), to the machine's local disk, through efivarfs. It is the
// boot menu's "local disk" entry: the agent sets BootNext and reboots;
// the firmware boots that entry once and goes back to BootOrder (network
// first, so the next boot is sealroot's again).
//
// The local disk is the first active BootOrder entry whose device path
// is not a network boot (MAC, IPv4, IPv6, URI nodes) and not a firmware
// application (PIWG firmware file or volume nodes: the UEFI shell, the
// setup menu).
package bootnext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf16"
)

// GlobalVariable is EFI_GLOBAL_VARIABLE, the vendor GUID of BootNext,
// BootOrder and Boot####.
const GlobalVariable = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// DefaultDir is where efivarfs is mounted.
const DefaultDir = "/sys/firmware/efi/efivars"

// ErrNoLocalDisk means BootOrder has no local-disk entry.
var ErrNoLocalDisk = errors.New("bootnext: no local disk entry in BootOrder")

// Variable attributes (UEFI 2.10, section 8.2).
const (
	attrNonVolatile = 0x1
	attrBootService = 0x2
	attrRuntime     = 0x4
)

// loadOptionActive is LOAD_OPTION_ACTIVE of EFI_LOAD_OPTION.Attributes.
const loadOptionActive = 0x1

// Entry is one Boot#### load option.
type Entry struct {
	Number      uint16
	Description string
	Active      bool
	Local       bool // neither network nor a firmware application
}

// read returns the data of variable name (without its attributes).
func read(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name+"-"+GlobalVariable))
	if err != nil {
		return nil, fmt.Errorf("bootnext: %w", err)
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("bootnext: %s of %d bytes", name, len(b))
	}
	return b[4:], nil
}

// Order returns BootOrder's entries, in order.
func Order(dir string) ([]Entry, error) {
	b, err := read(dir, "BootOrder")
	if err != nil {
		return nil, err
	}
	var out []Entry
	for i := 0; i+2 <= len(b); i += 2 {
		n := binary.LittleEndian.Uint16(b[i:])
		opt, err := read(dir, fmt.Sprintf("Boot%04X", n))
		if err != nil {
			continue // an entry BootOrder names but that is gone
		}
		e, err := ParseLoadOption(opt)
		if err != nil {
			continue
		}
		e.Number = n
		out = append(out, e)
	}
	return out, nil
}

// LocalDisk returns the first active local entry of BootOrder.
func LocalDisk(dir string) (Entry, error) {
	es, err := Order(dir)
	if err != nil {
		return Entry{}, err
	}
	for _, e := range es {
		if e.Active && e.Local {
			return e, nil
		}
	}
	return Entry{}, ErrNoLocalDisk
}

// ParseLoadOption parses an EFI_LOAD_OPTION (UEFI 2.10, section 3.1.3):
// Attributes (u32), FilePathListLength (u16), Description (UTF-16,
// NUL-terminated), FilePathList, OptionalData.
func ParseLoadOption(b []byte) (Entry, error) {
	if len(b) < 6 {
		return Entry{}, errors.New("bootnext: short load option")
	}
	attr := binary.LittleEndian.Uint32(b)
	pathLen := int(binary.LittleEndian.Uint16(b[4:]))
	var desc []uint16
	i := 6
	for ; i+2 <= len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		desc = append(desc, c)
	}
	i += 2
	if i > len(b) || pathLen > len(b)-i {
		return Entry{}, errors.New("bootnext: truncated load option")
	}
	local, err := localPath(b[i : i+pathLen])
	if err != nil {
		return Entry{}, err
	}
	return Entry{Description: string(utf16.Decode(desc)), Active: attr&loadOptionActive != 0, Local: local}, nil
}

// Device path node types and subtypes (UEFI 2.10, section 10.3).
const (
	typeMessaging = 0x03
	typeMedia     = 0x04
	typeEnd       = 0x7f
)

// localPath reports whether the first device path of a file path list
// is neither a network boot nor a firmware application.
func localPath(p []byte) (bool, error) {
	for len(p) >= 4 {
		typ, sub, n := p[0], p[1], int(binary.LittleEndian.Uint16(p[2:]))
		if n < 4 || n > len(p) {
			return false, errors.New("bootnext: malformed device path")
		}
		switch {
		case typ == typeEnd:
			return true, nil
		case typ == typeMessaging && (sub == 0x0b || sub == 0x0c || sub == 0x0d || sub == 0x18): // MAC, IPv4, IPv6, URI
			return false, nil
		case typ == typeMedia && (sub == 0x06 || sub == 0x07): // PIWG firmware file, firmware volume
			return false, nil
		}
		p = p[n:]
	}
	return false, errors.New("bootnext: device path without an end node")
}

// Set writes BootNext = n. An existing BootNext is made mutable first
// (efivarfs marks variables immutable).
func Set(dir string, n uint16) error {
	b := make([]byte, 6)
	binary.LittleEndian.PutUint32(b, attrNonVolatile|attrBootService|attrRuntime)
	binary.LittleEndian.PutUint16(b[4:], n)
	return putVar(filepath.Join(dir, "BootNext-"+GlobalVariable), b)
}

// SetLocalDisk sets BootNext to the local disk and returns its entry.
func SetLocalDisk(dir string) (Entry, error) {
	e, err := LocalDisk(dir)
	if err != nil {
		return Entry{}, err
	}
	return e, Set(dir, e.Number)
}
