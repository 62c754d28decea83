//go:build cgo

package evidence_test

import (
	"crypto/rand"
	"testing"

	"github.com/sealroot/sealroot/server/attest/evidence"
)

func BenchmarkVerifyQuote(b *testing.B) {
	s := simulate(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := evidence.VerifyQuote(s.AK, s.Quote, s.Sig, s.Extra, s.PCRs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewActivation(b *testing.B) {
	s := simulate(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := evidence.NewActivation(rand.Reader, s.EK, s.AK); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseEK(b *testing.B) {
	s := simulate(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := evidence.ParseEK(s.EK); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseKeys is what a server's key cache saves an attestation of
// a machine it holds: the EK and AK checked and decoded, the EK's public
// and encapsulation keys built.
func BenchmarkParseKeys(b *testing.B) {
	s := simulate(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := evidence.ParseKeys(s.EK, s.AK); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeysVerifyQuote is BenchmarkVerifyQuote with the AK parsed
// once, as the server verifies.
func BenchmarkKeysVerifyQuote(b *testing.B) {
	s := simulate(b)
	k, err := evidence.ParseKeys(s.EK, s.AK)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.VerifyQuote(s.Quote, s.Sig, s.Extra, s.PCRs); err != nil {
			b.Fatal(err)
		}
	}
}
