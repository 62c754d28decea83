package uki

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// DefaultStub is Debian's systemd EFI stub (package systemd-boot-efi).
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// Section names systemd-stub looks for.
const (
	SectionLinux   = ".linux"
	SectionOSRel   = ".osrel"
	SectionCmdline = ".cmdline"
	SectionInitrd  = ".initrd"
)

// Errors returned by Build, for errors.Is.
var (
	// ErrSigned means the stub carries a signature; adding sections would
	// invalidate it.
	ErrSigned = errors.New("uki: stub is signed")
	// ErrNoRoom means the stub's headers have no room for more section
	// headers.
	ErrNoRoom = errors.New("uki: no room for section headers in the stub")
	// ErrSection means a section is empty, badly named or already present.
	ErrSection = errors.New("uki: invalid section")
)

// Parts are the contents of a UKI. Linux and Initrd are required.
type Parts struct {
	Linux  []byte // the kernel (vmlinuz, an EFI PE image)
	Initrd []byte // the initramfs
	// Cmdline is the built-in command line. systemd-stub uses it unless the
	// loader passes one (iPXE always does) and Secure Boot is off.
	Cmdline string
	OSRel   []byte // os-release(5) content
}

// Sections returns the parts as sections in the order systemd-stub
// measures them: .linux, .osrel, .cmdline, .initrd. Empty optional parts
// are left out.
func (p Parts) Sections() []Section {
	var out []Section
	add := func(name string, data []byte) {
		if len(data) > 0 {
			out = append(out, Section{Name: name, Data: data, VirtualSize: uint32(len(data))})
		}
	}
	add(SectionLinux, p.Linux)
	add(SectionOSRel, p.OSRel)
	add(SectionCmdline, []byte(p.Cmdline))
	add(SectionInitrd, p.Initrd)
	return out
}

// BuildFile reads the stub at stubPath (DefaultStub if empty) and builds a
// UKI from parts.
func BuildFile(stubPath string, p Parts) ([]byte, error) {
	if stubPath == "" {
		stubPath = DefaultStub
	}
	stub, err := os.ReadFile(stubPath)
	if err != nil {
		return nil, fmt.Errorf("uki: read stub: %w", err)
	}
	if len(p.Linux) == 0 || len(p.Initrd) == 0 {
		return nil, fmt.Errorf("%w: kernel and initrd are required", ErrSection)
	}
	return Build(stub, p.Sections())
}

// sectionAlign is the alignment of added sections' addresses: a page, so
// firmware can map them with page protections.
const sectionAlign = 0x1000

const scnInitializedDataRead = 0x00000040 | 0x40000000 // CNT_INITIALIZED_DATA | MEM_READ

// Build returns stub with sections appended. Each section's Data is its
// content; VirtualSize is set to len(Data).
func Build(stub []byte, sections []Section) ([]byte, error) {
	h, err := parseHeader(stub)
	if err != nil {
		return nil, fmt.Errorf("uki: stub: %w", err)
	}
	if h.certSize != 0 {
		return nil, ErrSigned
	}
	if err := checkNew(h, sections); err != nil {
		return nil, err
	}
	nsec := len(h.sections) + len(sections)
	if end := h.sectionsOff + nsec*sectionHeaderSize; end > h.sizeOfHeaders || end > firstRaw(h) {
		return nil, fmt.Errorf("%w: %d sections need %d bytes, headers end at %d", ErrNoRoom, nsec, end, min(h.sizeOfHeaders, firstRaw(h)))
	}
	fileAlign := max(h.fileAlign, 1)
	// Keep the stub up to its last section's raw data; drop trailing data
	// (a COFF symbol table that nothing loads).
	out := append([]byte(nil), stub[:rawEnd(h)]...)
	va := alignUp(virtEnd(h), max(sectionAlign, h.sectionAlign))
	var initData uint32
	for i, s := range sections {
		if len(s.Data) > MaxImageSize-len(out) {
			return nil, fmt.Errorf("%w: image over %d bytes", ErrSection, MaxImageSize)
		}
		off := alignUp(uint32(len(out)), fileAlign)
		raw := alignUp(uint32(len(s.Data)), fileAlign)
		out = append(out, make([]byte, int(off)-len(out))...)
		out = append(out, s.Data...)
		out = append(out, make([]byte, int(raw)-len(s.Data))...)
		sh := out[h.sectionsOff+(len(h.sections)+i)*sectionHeaderSize:][:sectionHeaderSize]
		clear(sh)
		copy(sh[:8], s.Name)
		binary.LittleEndian.PutUint32(sh[8:], uint32(len(s.Data)))
		binary.LittleEndian.PutUint32(sh[12:], va)
		binary.LittleEndian.PutUint32(sh[16:], raw)
		binary.LittleEndian.PutUint32(sh[20:], off)
		binary.LittleEndian.PutUint32(sh[36:], scnInitializedDataRead)
		initData += raw
		va = alignUp(va+uint32(len(s.Data)), sectionAlign)
	}
	fixHeaders(out, h, nsec, va, initData)
	return out, nil
}

func checkNew(h *header, sections []Section) error {
	seen := map[string]bool{}
	for _, s := range h.sections {
		seen[s.name] = true
	}
	for _, s := range sections {
		switch {
		case len(s.Name) == 0 || len(s.Name) > 8:
			return fmt.Errorf("%w: name %q", ErrSection, s.Name)
		case seen[s.Name]:
			return fmt.Errorf("%w: %s present twice", ErrSection, s.Name)
		case len(s.Data) == 0:
			return fmt.Errorf("%w: %s is empty", ErrSection, s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// fixHeaders updates the COFF and optional headers of out for nsec
// sections ending below sizeOfImage, then the checksum.
func fixHeaders(out []byte, h *header, nsec int, sizeOfImage, addedInitData uint32) {
	le := binary.LittleEndian
	le.PutUint16(out[h.coffOff+2:], uint16(nsec))
	le.PutUint32(out[h.coffOff+8:], 0)  // PointerToSymbolTable: dropped
	le.PutUint32(out[h.coffOff+12:], 0) // NumberOfSymbols
	le.PutUint32(out[h.optOff+8:], le.Uint32(out[h.optOff+8:])+addedInitData)
	le.PutUint32(out[h.optOff+56:], alignUp(sizeOfImage, max(h.sectionAlign, 1)))
	le.PutUint32(out[h.checksumOff:], 0)
	le.PutUint32(out[h.checksumOff:], checksum(out))
}

// checksum is the PE image checksum (as in imagehlp's CheckSumMappedFile)
// of b with its CheckSum field zeroed.
func checksum(b []byte) uint32 {
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}

func firstRaw(h *header) int {
	first := h.sizeOfHeaders
	for _, s := range h.sections {
		if s.sizeOfRawData != 0 {
			first = min(first, int(s.rawOff))
		}
	}
	return first
}

func rawEnd(h *header) int {
	end := h.sizeOfHeaders
	for _, s := range h.sections {
		if s.sizeOfRawData != 0 {
			end = max(end, int(s.rawOff+s.sizeOfRawData))
		}
	}
	return end
}

func virtEnd(h *header) uint32 {
	var end uint32
	for _, s := range h.sections {
		end = max(end, s.virtualAddress+max(s.virtualSize, s.sizeOfRawData))
	}
	return end
}

func alignUp(v, a uint32) uint32 {
	if a == 0 {
		return v
	}
	return (v + a - 1) / a * a
}
