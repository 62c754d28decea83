package fakeboot

import (
	"encoding/binary"
	"unicode/utf16"
)

const algSHA256 = 0x000B

// specIDEvent returns the TCG_PCR_EVENT that opens a crypto-agile log: a
// TCG_EfiSpecIDEvent listing only sha256 (TCG PC Client PFP, 10.4.5.1).
func specIDEvent() []byte {
	var body []byte
	body = append(body, "Spec ID Event03\x00"...)
	body = binary.LittleEndian.AppendUint32(body, 0) // platformClass: client
	body = append(body, 0, 2, 0, 2)                  // minor, major, errata, uintnSize (UINT64)
	body = binary.LittleEndian.AppendUint32(body, 1) // numberOfAlgorithms
	body = binary.LittleEndian.AppendUint16(body, algSHA256)
	body = binary.LittleEndian.AppendUint16(body, 32)
	body = append(body, 0) // vendorInfoSize

	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0)          // PCRIndex
	b = binary.LittleEndian.AppendUint32(b, EvNoAction) // EventType
	b = append(b, make([]byte, 20)...)                  // SHA-1 digest, zero
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// appendEvent2 appends e as a TCG_PCR_EVENT2 with a single sha256 digest.
func appendEvent2(b []byte, e Event) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(e.PCR))
	b = binary.LittleEndian.AppendUint32(b, e.Type)
	b = binary.LittleEndian.AppendUint32(b, 1) // digests.count
	b = binary.LittleEndian.AppendUint16(b, algSHA256)
	d := e.Digest
	if d == nil {
		d = make([]byte, 32)
	}
	b = append(b, d...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
	return append(b, e.Data...)
}

// utf16z encodes s as NUL-terminated UTF-16LE.
func utf16z(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s + "\x00")) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

func guid(a uint32, b, c uint16, d [8]byte) [16]byte {
	var g [16]byte
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	copy(g[8:], d[:])
	return g
}

// variableData encodes a UEFI_VARIABLE_DATA structure.
func variableData(vendor [16]byte, name string, data []byte) []byte {
	n := utf16.Encode([]rune(name))
	b := append([]byte(nil), vendor[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(n)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	for _, u := range n {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return append(b, data...)
}

// loadOption encodes a minimal EFI_LOAD_OPTION with an end-of-path device path.
func loadOption(desc string) []byte {
	end := []byte{0x7F, 0xFF, 4, 0}
	b := binary.LittleEndian.AppendUint32(nil, 1) // LOAD_OPTION_ACTIVE
	b = binary.LittleEndian.AppendUint16(b, uint16(len(end)))
	b = append(b, utf16z(desc)...)
	return append(b, end...)
}

// imageLoadEvent encodes a UEFI_IMAGE_LOAD_EVENT whose device path is a
// single file-path node (when path is set) and an end node.
func imageLoadEvent(size int, path string) []byte {
	var dp []byte
	if path != "" {
		p := utf16z(path)
		dp = append(dp, 0x04, 0x04) // media device path, file path
		dp = binary.LittleEndian.AppendUint16(dp, uint16(4+len(p)))
		dp = append(dp, p...)
	}
	dp = append(dp, 0x7F, 0xFF, 4, 0)
	b := binary.LittleEndian.AppendUint64(nil, 0x7E000000) // ImageLocationInMemory
	b = binary.LittleEndian.AppendUint64(b, uint64(size))
	b = binary.LittleEndian.AppendUint64(b, 0) // ImageLinkTimeAddress
	b = binary.LittleEndian.AppendUint64(b, uint64(len(dp)))
	return append(b, dp...)
}

// taggedEvent encodes a TCG_PCClientTaggedEvent.
func taggedEvent(id uint32, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, id)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}
