//go:build cgo

package evidence_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/wire"
)

func TestVerifyQuote(t *testing.T) {
	s := simulate(t)
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	alter := func(mod func([]wire.PCR) []wire.PCR) []wire.PCR {
		pcrs := slices.Clone(s.PCRs)
		for i := range pcrs {
			pcrs[i].Digest = bytes.Clone(pcrs[i].Digest)
		}
		return mod(pcrs)
	}
	for _, tc := range []struct {
		name           string
		ak, quote, sig []byte
		extra          []byte
		pcrs           []wire.PCR
		want           error
	}{
		{name: "ecdsa_ak", want: nil},
		{name: "rsassa_ak", ak: s.RSAAK, quote: s.RSAQuote, sig: s.RSASig},
		{name: "pcrs_in_other_order", pcrs: alter(func(p []wire.PCR) []wire.PCR { slices.Reverse(p); return p })},
		{name: "signature_by_another_key", sig: s.RSASig, want: evidence.ErrSignature},
		{name: "quote_of_another_key", ak: s.RSAAK, want: evidence.ErrSignature},
		{name: "quote_tampered", quote: flip(s.Quote, len(s.Quote)-1), want: evidence.ErrSignature},
		{name: "signature_tampered", sig: flip(s.Sig, len(s.Sig)-1), want: evidence.ErrSignature},
		{name: "signature_trailing_byte", sig: append(bytes.Clone(s.Sig), 0), want: evidence.ErrSignature},
		{name: "signature_empty", sig: []byte{}, want: evidence.ErrSignature},
		{name: "ek_as_ak", ak: s.EK, want: evidence.ErrBadAK},
		{name: "certify_not_quote", ak: s.RSAAK, quote: s.Certify, sig: s.CertifySig, want: evidence.ErrQuoteType},
		{name: "wrong_extra_data", extra: flip(s.Extra, 0), want: evidence.ErrExtraData},
		{name: "no_extra_data", extra: []byte{}, want: evidence.ErrExtraData},
		{name: "pcr_added", pcrs: alter(func(p []wire.PCR) []wire.PCR {
			return append(p, wire.PCR{Index: 8, Digest: make([]byte, 32)})
		}), want: evidence.ErrPCRSelection},
		{name: "pcr_removed", pcrs: s.PCRs[1:], want: evidence.ErrPCRSelection},
		{name: "pcr_index_changed", pcrs: alter(func(p []wire.PCR) []wire.PCR { p[0].Index = 1; return p }), want: evidence.ErrPCRSelection},
		{name: "pcr_repeated", pcrs: alter(func(p []wire.PCR) []wire.PCR { return append(p, p[0]) }), want: evidence.ErrPCRSelection},
		{name: "pcr_out_of_range", pcrs: alter(func(p []wire.PCR) []wire.PCR { p[0].Index = 24; return p }), want: evidence.ErrPCRSelection},
		{name: "no_pcrs", pcrs: []wire.PCR{}, want: evidence.ErrPCRSelection},
		{name: "pcr_value_altered", pcrs: alter(func(p []wire.PCR) []wire.PCR { p[2].Digest[0] ^= 1; return p }), want: evidence.ErrPCRDigest},
		{name: "pcr_values_swapped", pcrs: alter(func(p []wire.PCR) []wire.PCR {
			p[1].Digest, p[3].Digest = p[3].Digest, p[1].Digest // PCR 4 (extended) and PCR 9
			return p
		}), want: evidence.ErrPCRDigest},
		{name: "pcr_value_short", pcrs: alter(func(p []wire.PCR) []wire.PCR { p[0].Digest = p[0].Digest[:20]; return p }), want: evidence.ErrPCRDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ak, quote, sig, extra, pcrs := or(tc.ak, s.AK), or(tc.quote, s.Quote), or(tc.sig, s.Sig), or(tc.extra, s.Extra), tc.pcrs
			if pcrs == nil {
				pcrs = s.PCRs
			}
			info, err := evidence.VerifyQuote(ak, quote, sig, extra, pcrs)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("VerifyQuote() = %v, want %v", err, tc.want)
			}
			if err == nil && !info.Safe {
				t.Errorf("QuoteInfo = %+v, want Safe", info)
			}

			// The same checks through keys parsed once (a server's cache).
			keys, err := evidence.ParseKeys(s.EK, ak)
			if err != nil {
				if !errors.Is(err, tc.want) || !errors.Is(err, evidence.ErrBadAK) {
					t.Fatalf("ParseKeys() = %v, want %v", err, tc.want)
				}
				return
			}
			if _, err := keys.VerifyQuote(quote, sig, extra, pcrs); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Keys.VerifyQuote() = %v, want %v", err, tc.want)
			}
		})
	}
}

// or returns b, or def when b is nil (not when empty).
func or(b, def []byte) []byte {
	if b == nil {
		return def
	}
	return b
}

func FuzzVerifyQuote(f *testing.F) {
	s := simulate(f)
	f.Add(s.AK, s.Quote, s.Sig)
	f.Add(s.RSAAK, s.RSAQuote, s.RSASig)
	f.Add(s.RSAAK, s.Certify, s.CertifySig)
	f.Fuzz(func(t *testing.T, ak, quote, sig []byte) {
		_, err := evidence.VerifyQuote(ak, quote, sig, s.Extra, s.PCRs)
		if err == nil && !bytes.Equal(quote, s.Quote) && !bytes.Equal(quote, s.RSAQuote) {
			t.Fatalf("VerifyQuote accepted a quote the TPM never signed: %x", quote)
		}
	})
}
