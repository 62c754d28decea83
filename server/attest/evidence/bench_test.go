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
