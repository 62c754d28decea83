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
	ak, err := ParseAK(akPublic)
	if err != nil {
		return nil, err
	}
	if err := verifySignature(ak, quote, sig); err != nil {
		return nil, err
	}
	attest, err := tpm2.Unmarshal[tpm2.TPMSAttest](quote)
	if err != nil {
		return nil, fmt.Errorf("decode quote: %v: %w", err, ErrQuoteType)
	}
	if attest.Magic != tpm2.TPMGeneratedValue || attest.Type != tpm2.TPMSTAttestQuote {
		return nil, fmt.Errorf("attestation magic %#x type %#x: %w", uint32(attest.Magic), uint16(attest.Type), ErrQuoteType)
	}
	info, err := attest.Attested.Quote()
	if err != nil {
		return nil, fmt.Errorf("quote info: %v: %w", err, ErrQuoteType)
	}
	if !bytes.Equal(attest.ExtraData.Buffer, extraData) {
		return nil, ErrExtraData
	}
	sorted, err := sortPCRs(pcrs)
	if err != nil {
		return nil, err
	}
	if err := checkSelection(info.PCRSelect, sorted); err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, p := range sorted {
		h.Write(p.Digest)
	}
	if !bytes.Equal(info.PCRDigest.Buffer, h.Sum(nil)) {
		return nil, ErrPCRDigest
	}
	c := attest.ClockInfo
	return &QuoteInfo{Clock: c.Clock, ResetCount: c.ResetCount, RestartCount: c.RestartCount, Safe: c.Safe}, nil
}

// verifySignature checks sig, a TPMT_SIGNATURE in the AK's scheme, over
// SHA-256(msg). The encoding must be exact.
func verifySignature(ak *tpm2.TPMTPublic, msg, sig []byte) error {
	s, err := tpm2.Unmarshal[tpm2.TPMTSignature](sig)
	if err != nil {
		return fmt.Errorf("decode signature: %v: %w", err, ErrSignature)
	}
	digest := sha256.Sum256(msg)
	switch {
	case ak.Type == tpm2.TPMAlgECC && s.SigAlg == tpm2.TPMAlgECDSA:
		return verifyECDSA(ak, s, sig, digest[:])
	case ak.Type == tpm2.TPMAlgRSA && s.SigAlg == tpm2.TPMAlgRSASSA:
		return verifyRSASSA(ak, s, sig, digest[:])
	}
	return fmt.Errorf("signature algorithm %v for a key of type %v: %w", s.SigAlg, ak.Type, ErrSignature)
}

func verifyECDSA(ak *tpm2.TPMTPublic, s *tpm2.TPMTSignature, sig, digest []byte) error {
	e, err := s.Signature.ECDSA()
	if err != nil {
		return fmt.Errorf("ECDSA signature: %v: %w", err, ErrSignature)
	}
	if e.Hash != tpm2.TPMAlgSHA256 || len(sig) != 8+len(e.SignatureR.Buffer)+len(e.SignatureS.Buffer) {
		return fmt.Errorf("ECDSA signature encoding: %w", ErrSignature)
	}
	point, err := ak.Unique.ECC()
	if err != nil {
		return fmt.Errorf("AK ECC point: %v: %w", err, ErrBadAK)
	}
	key, err := ecdsaKey(point)
	if err != nil {
		return err
	}
	r := new(big.Int).SetBytes(e.SignatureR.Buffer)
	ss := new(big.Int).SetBytes(e.SignatureS.Buffer)
	if !ecdsa.Verify(key, digest, r, ss) {
		return ErrSignature
	}
	return nil
}

func verifyRSASSA(ak *tpm2.TPMTPublic, s *tpm2.TPMTSignature, sig, digest []byte) error {
	r, err := s.Signature.RSASSA()
	if err != nil {
		return fmt.Errorf("RSASSA signature: %v: %w", err, ErrSignature)
	}
	if r.Hash != tpm2.TPMAlgSHA256 || len(sig) != 6+len(r.Sig.Buffer) {
		return fmt.Errorf("RSASSA signature encoding: %w", ErrSignature)
	}
	key, err := rsaKey(ak)
	if err != nil {
		return err
	}
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest, r.Sig.Buffer); err != nil {
		return ErrSignature
	}
	return nil
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

// checkSelection checks that sel selects exactly the indices of sorted in
// the sha256 bank and nothing else.
func checkSelection(sel tpm2.TPMLPCRSelection, sorted []wire.PCR) error {
	if len(sel.PCRSelections) != 1 || sel.PCRSelections[0].Hash != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("quote selects %d banks, want only sha256: %w", len(sel.PCRSelections), ErrPCRSelection)
	}
	var want [(MaxPCR + 1) / 8]byte
	for _, p := range sorted {
		want[p.Index/8] |= 1 << (p.Index % 8)
	}
	got := sel.PCRSelections[0].PCRSelect
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
