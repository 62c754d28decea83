package uki

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrFormat means the input is not a PE image this package can handle.
var ErrFormat = errors.New("uki: malformed PE image")

// Limits of the PE parser.
const (
	// MaxSections is the most sections a PE image may have (PE/COFF spec).
	MaxSections = 96
	// MaxImageSize is the largest PE image accepted: kernel plus initramfs
	// must fit in 2 GiB, far more than any boot image needs.
	MaxImageSize = 1 << 31
)

const (
	sectionHeaderSize = 40
	coffHeaderSize    = 20
	magicPE32         = 0x10b
	magicPE32Plus     = 0x20b
	dirSecurity       = 4
)

// header is a parsed PE header: offsets into the file and the section table.
type header struct {
	coffOff       int // COFF file header, after "PE\0\0"
	optOff        int // optional header
	pe32Plus      bool
	checksumOff   int
	secDirOff     int // Security data directory entry; 0 if absent
	sizeOfHeaders int
	sectionAlign  uint32
	fileAlign     uint32
	sectionsOff   int // section table
	sections      []sectionHeader
	certOff       int // certificate table (file offset); 0 if none
	certSize      int
}

type sectionHeader struct {
	name            string
	virtualSize     uint32
	virtualAddress  uint32
	sizeOfRawData   uint32
	rawOff          uint32
	characteristics uint32
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// parseHeader parses and bounds-checks b's PE headers and section table.
func parseHeader(b []byte) (*header, error) {
	if len(b) > MaxImageSize {
		return nil, formatErr("%d bytes, limit %d", len(b), MaxImageSize)
	}
	if len(b) < 64 || b[0] != 'M' || b[1] != 'Z' {
		return nil, formatErr("no MZ header")
	}
	peOff := int(binary.LittleEndian.Uint32(b[0x3c:]))
	if peOff > len(b)-4-coffHeaderSize || string(b[peOff:peOff+4]) != "PE\x00\x00" {
		return nil, formatErr("no PE signature")
	}
	h := &header{coffOff: peOff + 4}
	nsec := int(binary.LittleEndian.Uint16(b[h.coffOff+2:]))
	optSize := int(binary.LittleEndian.Uint16(b[h.coffOff+16:]))
	h.optOff = h.coffOff + coffHeaderSize
	h.sectionsOff = h.optOff + optSize
	if nsec > MaxSections {
		return nil, formatErr("%d sections, limit %d", nsec, MaxSections)
	}
	if h.sectionsOff+nsec*sectionHeaderSize > len(b) {
		return nil, formatErr("section table past end of file")
	}
	if err := h.parseOptional(b, optSize); err != nil {
		return nil, err
	}
	if h.sizeOfHeaders < h.sectionsOff+nsec*sectionHeaderSize || h.sizeOfHeaders > len(b) {
		return nil, formatErr("SizeOfHeaders %d out of range", h.sizeOfHeaders)
	}
	for i := range nsec {
		s := parseSection(b[h.sectionsOff+i*sectionHeaderSize:])
		if s.sizeOfRawData != 0 && (int64(s.rawOff)+int64(s.sizeOfRawData) > int64(len(b)) || int(s.rawOff) < h.sizeOfHeaders) {
			return nil, formatErr("section %q raw data out of range", s.name)
		}
		h.sections = append(h.sections, s)
	}
	return h, nil
}

// parseOptional reads the fields of the optional header this package uses.
func (h *header) parseOptional(b []byte, optSize int) error {
	if optSize < 2 {
		return formatErr("no optional header")
	}
	var dirsOff, countOff int
	switch binary.LittleEndian.Uint16(b[h.optOff:]) {
	case magicPE32:
		dirsOff, countOff = 96, 92
	case magicPE32Plus:
		h.pe32Plus = true
		dirsOff, countOff = 112, 108
	default:
		return formatErr("unknown optional header magic")
	}
	if optSize < dirsOff {
		return formatErr("optional header of %d bytes", optSize)
	}
	o := b[h.optOff:]
	h.sectionAlign = binary.LittleEndian.Uint32(o[32:])
	h.fileAlign = binary.LittleEndian.Uint32(o[36:])
	h.sizeOfHeaders = int(binary.LittleEndian.Uint32(o[60:]))
	h.checksumOff = h.optOff + 64
	ndirs := int(binary.LittleEndian.Uint32(o[countOff:]))
	if ndirs <= dirSecurity || dirsOff+(dirSecurity+1)*8 > optSize {
		return nil
	}
	h.secDirOff = h.optOff + dirsOff + dirSecurity*8
	off := int64(binary.LittleEndian.Uint32(b[h.secDirOff:]))
	size := int64(binary.LittleEndian.Uint32(b[h.secDirOff+4:]))
	if size == 0 {
		return nil
	}
	if off == 0 || off+size > int64(len(b)) {
		return formatErr("certificate table out of range")
	}
	h.certOff, h.certSize = int(off), int(size)
	return nil
}

func parseSection(s []byte) sectionHeader {
	return sectionHeader{
		name:            strings.TrimRight(string(s[:8]), "\x00"),
		virtualSize:     binary.LittleEndian.Uint32(s[8:]),
		virtualAddress:  binary.LittleEndian.Uint32(s[12:]),
		sizeOfRawData:   binary.LittleEndian.Uint32(s[16:]),
		rawOff:          binary.LittleEndian.Uint32(s[20:]),
		characteristics: binary.LittleEndian.Uint32(s[36:]),
	}
}

// Section is one PE section as the loaded image holds it.
type Section struct {
	Name string
	// Data is the section's file content, at most VirtualSize bytes.
	Data []byte
	// VirtualSize is the section's size in memory; bytes past len(Data)
	// are zero.
	VirtualSize uint32
}

// Sections returns pe's sections in section-table order.
func Sections(pe []byte) ([]Section, error) {
	h, err := parseHeader(pe)
	if err != nil {
		return nil, err
	}
	out := make([]Section, 0, len(h.sections))
	for _, s := range h.sections {
		sec := Section{Name: s.name, VirtualSize: s.virtualSize}
		if n := min(s.virtualSize, s.sizeOfRawData); n > 0 {
			sec.Data = pe[s.rawOff : s.rawOff+n : s.rawOff+n]
		}
		out = append(out, sec)
	}
	return out, nil
}
