package pki

import "testing"

// FuzzParseEKCert: EK certificates and chain entries come from the agent's
// Hello; the parsers never panic on them.
func FuzzParseEKCert(f *testing.F) {
	for _, s := range []string{"\x10\x01\x00\x00\x05\x30\x03\x02\x01\x01", "\x10\x01\x00\xff\xff", "\x30\x03\x02\x01\x01\x00\x00", "\x30\x80", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseEKCert(b)
		ParseEKChain([][]byte{b, b})
	})
}
