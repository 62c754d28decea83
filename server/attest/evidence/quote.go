package evidence

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/wire"
)

// Sentinel errors of VerifyQuote, one per check, in the order checked.
var (
	ErrSignature    = errors.New("quote signature does not verify with the AK")
	ErrQuoteType    = errors.New("not a TPM-generated quote")
	ErrExtraData    = errors.New("quote extra data does not match")
	ErrPCRSelection = errors.New("quote PCR selection does not match")
	ErrPCRDigest    = errors.New("quote PCR digest does not match the PCR values")
)

// MaxPCR is the highest PCR index accepted (PC Client TPMs have 24 PCRs).
const MaxPCR = 23

// QuoteInfo is what a verified quote says about the TPM's clock.
type QuoteInfo struct {
	Clock        uint64 // milliseconds the TPM has been powered
	ResetCount   uint32 // TPM resets (reboots) since the last TPM2_Clear
	RestartCount uint32 // restarts and resumes since the last reset
	Safe         bool   // no greater Clock value was reported before
}

// VerifyQuote verifies a TPM2_Quote by the AK over the sha256 PCRs pcrs
// (any order). quote holds the TPMS_ATTEST bytes, sig the TPMT_SIGNATURE.
// Checks run in this order, each failure wrapping its own sentinel: the AK's
// signature over SHA-256(quote) (ErrSignature, or ErrBadAK for the key), the
// TPM_GENERATED magic and quote type (ErrQuoteType), the extra data
// (ErrExtraData), the selection being exactly the sha256 bank with the indices
// of pcrs (ErrPCRSelection), and the PCR digest being the SHA-256 of the
// values in index order (ErrPCRDigest).
func VerifyQuote(akPublic, quote, sig, extraData []byte, pcrs []wire.PCR) (*QuoteInfo, error) {
	ak, err := parseAKKey(akPublic)
	if err != nil {
		return nil, err
	}
	return verifyQuote(ak, quote, sig, extraData, pcrs)
}

// verifyQuote is VerifyQuote with the AK's public key (*ecdsa.PublicKey
// or *rsa.PublicKey, from parseAKKey).
func verifyQuote(ak crypto.PublicKey, quote, sig, extraData []byte, pcrs []wire.PCR) (*QuoteInfo, error) {
	if err := verifySignature(ak, quote, sig); err != nil {
		return nil, err
	}
	q, err := parseQuote(quote)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(q.extraData, extraData) {
		return nil, ErrExtraData
	}
	sorted, err := sortPCRs(pcrs)
	if err != nil {
		return nil, err
	}
	if err := checkSelection(q, sorted); err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, p := range sorted {
		h.Write(p.Digest)
	}
	if !bytes.Equal(q.pcrDigest, h.Sum(nil)) {
		return nil, ErrPCRDigest
	}
	return &q.info, nil
}

// quoteInfo is the part of a TPMS_ATTEST of type quote that VerifyQuote
// checks: its fields alias the quote's bytes.
type quoteInfo struct {
	extraData []byte
	info      QuoteInfo
	banks     int    // PCR selections in the quote
	bank      uint16 // the first selection's hash algorithm
	pcrSelect []byte // the first selection's bitmap
	pcrDigest []byte
}

// TPM constants of a quote (Part 2: TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE).
const (
	tpmGenerated     = 0xff544347
	tpmSTAttestQuote = 0x8018
)

// parseQuote decodes a TPMS_ATTEST of type quote: magic, type,
// qualifiedSigner, extraData, clockInfo, firmwareVersion, then the
// TPMS_QUOTE_INFO's PCR selections and digest, with nothing after them.
// It decodes by hand rather than with go-tpm's reflection: it runs for
// every attestation. Any failure wraps ErrQuoteType.
func parseQuote(quote []byte) (*quoteInfo, error) {
	r := reader{b: quote}
	magic, typ := r.u32(), r.u16()
	if r.short {
		return nil, fmt.Errorf("quote of %d bytes is truncated: %w", len(quote), ErrQuoteType)
	}
	if magic != tpmGenerated || typ != tpmSTAttestQuote {
		return nil, fmt.Errorf("attestation magic %#x type %#x: %w", magic, typ, ErrQuoteType)
	}
	q := &quoteInfo{}
	r.view()               // qualifiedSigner
	q.extraData = r.view() // extraData
	q.info.Clock = r.u64() // clockInfo
	q.info.ResetCount = r.u32()
	q.info.RestartCount = r.u32()
	safe := r.u8()
	r.u64() // firmwareVersion
	banks := r.u32()
	for i := uint32(0); i < banks && !r.short; i++ {
		hash, size := r.u16(), r.u8()
		sel := r.next(int(size))
		if i == 0 {
			q.bank, q.pcrSelect = hash, sel
		}
		q.banks++
	}
	q.pcrDigest = r.view()
	if r.short || len(r.b) != 0 {
		return nil, fmt.Errorf("quote truncated or with %d trailing bytes: %w", len(r.b), ErrQuoteType)
	}
	if safe > 1 {
		return nil, fmt.Errorf("quote clock safe flag %d: %w", safe, ErrQuoteType)
	}
	q.info.Safe = safe == 1
	return q, nil
}

// verifySignature checks sig, a TPMT_SIGNATURE in the AK's scheme, over
// SHA-256(msg). The encoding must be exact. It decodes by hand, as
// parseQuote does.
func verifySignature(ak crypto.PublicKey, msg, sig []byte) error {
	r := reader{b: sig}
	alg, hash := tpm2.TPMAlgID(r.u16()), tpm2.TPMAlgID(r.u16())
	if r.short {
		return fmt.Errorf("decode signature: %d bytes: %w", len(sig), ErrSignature)
	}
	digest := sha256.Sum256(msg)
	switch key := ak.(type) {
	case *ecdsa.PublicKey:
		if alg != tpm2.TPMAlgECDSA {
			break
		}
		sigR, sigS := r.view(), r.view()
		if r.short || len(r.b) != 0 || hash != tpm2.TPMAlgSHA256 {
			return fmt.Errorf("ECDSA signature encoding: %w", ErrSignature)
		}
		if !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sigR), new(big.Int).SetBytes(sigS)) {
			return ErrSignature
		}
		return nil
	case *rsa.PublicKey:
		if alg != tpm2.TPMAlgRSASSA {
			break
		}
		s := r.view()
		if r.short || len(r.b) != 0 || hash != tpm2.TPMAlgSHA256 {
			return fmt.Errorf("RSASSA signature encoding: %w", ErrSignature)
		}
		if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], s); err != nil {
			return ErrSignature
		}
		return nil
	default:
		return fmt.Errorf("AK public key of type %T: %w", ak, ErrBadAK)
	}
	return fmt.Errorf("signature algorithm %v for a key of type %v: %w", alg, akType(ak), ErrSignature)
}

// akType is the TPM key type of an AK's public key.
func akType(ak crypto.PublicKey) tpm2.TPMAlgID {
	if _, ok := ak.(*rsa.PublicKey); ok {
		return tpm2.TPMAlgRSA
	}
	return tpm2.TPMAlgECC
}

// sortPCRs returns a copy of pcrs sorted by index after checking that the
// indices are distinct and in range and every value is a SHA-256 digest.
func sortPCRs(pcrs []wire.PCR) ([]wire.PCR, error) {
	if len(pcrs) == 0 {
		return nil, fmt.Errorf("no PCRs: %w", ErrPCRSelection)
	}
	sorted := slices.Clone(pcrs)
	slices.SortFunc(sorted, func(a, b wire.PCR) int { return a.Index - b.Index })
	for i, p := range sorted {
		if p.Index < 0 || p.Index > MaxPCR || (i > 0 && sorted[i-1].Index == p.Index) {
			return nil, fmt.Errorf("PCR index %d out of range or repeated: %w", p.Index, ErrPCRSelection)
		}
		if len(p.Digest) != sha256.Size {
			return nil, fmt.Errorf("PCR %d value of %d bytes: %w", p.Index, len(p.Digest), ErrPCRDigest)
		}
	}
	return sorted, nil
}

// checkSelection checks that q selects exactly the indices of sorted in
// the sha256 bank and nothing else.
func checkSelection(q *quoteInfo, sorted []wire.PCR) error {
	if q.banks != 1 || tpm2.TPMAlgID(q.bank) != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("quote selects %d banks, want only sha256: %w", q.banks, ErrPCRSelection)
	}
	var want [(MaxPCR + 1) / 8]byte
	for _, p := range sorted {
		want[p.Index/8] |= 1 << (p.Index % 8)
	}
	got := q.pcrSelect
	for i := range max(len(got), len(want)) {
		var g, w byte
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Errorf("quote selection %x, want %x: %w", got, want, ErrPCRSelection)
		}
	}
	return nil
}
