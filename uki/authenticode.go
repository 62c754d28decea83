package uki

import (
	"crypto/sha256"
	"slices"
)

// Authenticode returns the Authenticode SHA-256 digest of the PE image pe,
// as UEFI firmware measures an EFI application into PCR 4 and as
// `osslsigncode verify` prints it ("Calculated message digest"): the
// headers without the CheckSum field and the Security directory entry,
// the sections' raw data in file-offset order, then any trailing data
// except the certificate table.
func Authenticode(pe []byte) ([sha256.Size]byte, error) {
	h, err := parseHeader(pe)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	d := sha256.New()
	if h.secDirOff != 0 {
		d.Write(pe[:h.checksumOff])
		d.Write(pe[h.checksumOff+4 : h.secDirOff])
		d.Write(pe[h.secDirOff+8 : h.sizeOfHeaders])
	} else {
		d.Write(pe[:h.checksumOff])
		d.Write(pe[h.checksumOff+4 : h.sizeOfHeaders])
	}
	secs := slices.Clone(h.sections)
	slices.SortStableFunc(secs, func(a, b sectionHeader) int { return int(a.rawOff) - int(b.rawOff) })
	hashed := int64(h.sizeOfHeaders)
	for _, s := range secs {
		if s.sizeOfRawData == 0 {
			continue
		}
		d.Write(pe[s.rawOff : s.rawOff+s.sizeOfRawData])
		hashed += int64(s.sizeOfRawData)
	}
	// Trailing data: what the headers and sections did not cover, minus
	// the certificate table (UEFI: FileSize - SumOfBytesHashed - CertSize).
	if rest := int64(len(pe)) - hashed - int64(h.certSize); rest > 0 && hashed < int64(len(pe)) {
		d.Write(pe[hashed : hashed+rest])
	}
	var sum [sha256.Size]byte
	d.Sum(sum[:0])
	return sum, nil
}
