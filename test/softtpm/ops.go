package softtpm

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// ActivateCredential recovers the credential that tpm2.CreateCredential
// wrapped for this TPM's EK and AK, as TPM2_ActivateCredential does
// (TPM 2.0 Part 1, section 24): blob is the TPM2B_ID_OBJECT contents and
// encSecret the TPM2B_ENCRYPTED_SECRET contents.
func (t *TPM) ActivateCredential(blob, encSecret []byte) ([]byte, error) {
	// Seed: RSA-OAEP(SHA-256) with label "IDENTITY\0".
	seed, err := rsa.DecryptOAEP(sha256.New(), nil, t.ek, encSecret, []byte("IDENTITY\x00"))
	if err != nil {
		return nil, fmt.Errorf("decrypt seed: %w", ErrBadCredential)
	}
	// TPMS_ID_OBJECT: integrityHMAC (TPM2B_DIGEST) ‖ encIdentity.
	if len(blob) < 2 {
		return nil, fmt.Errorf("credential blob of %d bytes: %w", len(blob), ErrBadCredential)
	}
	n := int(binary.BigEndian.Uint16(blob))
	if n != sha256.Size || len(blob) < 2+n+2 {
		return nil, fmt.Errorf("credential blob HMAC of %d bytes: %w", n, ErrBadCredential)
	}
	mac, encIdentity := blob[2:2+n], blob[2+n:]

	// Outer integrity: HMAC-SHA256(KDFa(seed, "INTEGRITY"), encIdentity ‖ name).
	hmacKey := tpm2.KDFa(crypto.SHA256, seed, "INTEGRITY", nil, nil, sha256.Size*8)
	h := hmac.New(sha256.New, hmacKey)
	h.Write(encIdentity)
	h.Write(t.akNam)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, ErrIntegrity
	}

	// AES-128-CFB, zero IV, key KDFa(seed, "STORAGE", name).
	aesKey := tpm2.KDFa(crypto.SHA256, seed, "STORAGE", t.akNam, nil, 128)
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	plain := make([]byte, len(encIdentity))
	cipher.NewCFBDecrypter(block, make([]byte, block.BlockSize())).XORKeyStream(plain, encIdentity) //nolint:staticcheck // TPM 2.0 mandates CFB.
	// TPM2B_DIGEST.
	if m := int(binary.BigEndian.Uint16(plain)); m != len(plain)-2 || m > sha256.Size {
		return nil, fmt.Errorf("credential of %d bytes in %d: %w", m, len(plain)-2, ErrBadCredential)
	}
	return plain[2:], nil
}

// Quote signs the sha256 PCRs pcrs (any order; the selection is a bitmap)
// with the AK, as TPM2_Quote does: quote is the TPMS_ATTEST encoding and
// sig the TPMT_SIGNATURE encoding (ECDSA over SHA-256(quote)).
func (t *TPM) Quote(extraData []byte, pcrs []int) (quote, sig []byte, err error) {
	if len(extraData) > 64 { // sizeof(TPMU_HA)
		return nil, nil, fmt.Errorf("extra data of %d bytes: TPM_RC_SIZE", len(extraData))
	}
	sel := make([]byte, 3)
	for _, i := range pcrs {
		if i < 0 || i >= NumPCRs {
			return nil, nil, fmt.Errorf("quote PCR %d: %w", i, ErrBadPCR)
		}
		sel[i/8] |= 1 << (i % 8)
	}

	t.mu.Lock()
	h := sha256.New()
	for i := range NumPCRs {
		if sel[i/8]&(1<<(i%8)) != 0 {
			h.Write(t.pcrs[i][:])
		}
	}
	t.clock += 17
	clock := tpm2.TPMSClockInfo{Clock: t.clock, ResetCount: t.resetCount, RestartCount: t.restartCount, Safe: true}
	t.mu.Unlock()

	attest := tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: slices.Clone(t.akNam)},
		ExtraData:       tpm2.TPM2BData{Buffer: slices.Clone(extraData)},
		ClockInfo:       clock,
		FirmwareVersion: 0x2024_0001,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: sel}}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
		}),
	}
	quote = tpm2.Marshal(attest)
	digest := sha256.Sum256(quote)
	r, s, err := ecdsa.Sign(t.rand, t.ak, digest[:])
	if err != nil {
		return nil, nil, fmt.Errorf("ecdsa sign: %w", err)
	}
	sig = tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, 32))},
		}),
	})
	return quote, sig, nil
}
