package uki

import (
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the PE parsers: they must return an
// error or a result, never panic. Seeds are a built UKI's headers and
// Debian's stub and iPXE.
func FuzzParse(f *testing.F) {
	for _, path := range []string{DefaultStub, "/usr/lib/ipxe/ipxe.efi"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b[:min(len(b), 4096)])
		}
	}
	if stub, err := os.ReadFile(DefaultStub); err == nil {
		if u, err := Build(stub, testParts().Sections()); err == nil {
			f.Add(u[:0x600])
			f.Add(u)
		}
	}
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		Authenticode(b)
		Sections(b)
		Build(b, []Section{{Name: ".linux", Data: []byte{1}}})
	})
}
