package evidence

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
)

// ErrWrap means an EK's parameters cannot protect a credential or a
// duplicated object (not AES-CFB, or an unknown name algorithm).
var ErrWrap = errors.New("unsupported EK protection parameters")

// CreateDuplicate is tpm2.CreateDuplicate (an outer duplication wrapper,
// no inner wrapper): it encrypts sensitive, the TPMT_SENSITIVE of the
// object with Name name, so that only the TPM holding kem's private key
// can import it. It returns the TPM2B_PRIVATE contents and the
// TPM2B_ENCRYPTED_SECRET contents (inSymSeed).
func CreateDuplicate(rand io.Reader, kem tpm2.LabeledEncapsulationKey, name, sensitive []byte) (duplicate, inSymSeed []byte, err error) {
	return outerWrap(rand, kem, "DUPLICATE", name, sensitive)
}

// createCredential is tpm2.CreateCredential: TPM2_MakeCredential in
// software.
func createCredential(rand io.Reader, kem tpm2.LabeledEncapsulationKey, name, credential []byte) (idObject, encSecret []byte, err error) {
	return outerWrap(rand, kem, "IDENTITY", name, credential)
}

// outerWrap protects inner for the TPM holding kem's private key as
// TPM2_MakeCredential (label IDENTITY; Part 1, 24 "Credential
// Protection") and an outer duplication wrapper (label DUPLICATE; Part 1,
// 23.3.2.3) do: a seed encapsulated to the key under label, then
// TPM2B(inner) encrypted with AES-CFB (zero IV) under KDFa(seed,
// "STORAGE", name), and an HMAC under KDFa(seed, "INTEGRITY") over the
// ciphertext and name. The result is TPM2B(HMAC) followed by the
// ciphertext.
//
// go-tpm's CreateCredential and CreateDuplicate compute the same bytes
// (TestOuterWrapMatchesGoTPM); only the kem's Encapsulate, go-tpm's RSA-OAEP
// or ECDH, is theirs here. The TPM2B encodings are done by hand: go-tpm
// marshals them by reflection, which cost more than the AES and HMAC on
// the server's hot path.
func outerWrap(rand io.Reader, kem tpm2.LabeledEncapsulationKey, label string, name, inner []byte) (wrapped, encSeed []byte, err error) {
	sym := kem.SymmetricParameters()
	if sym == nil || sym.Algorithm != tpm2.TPMAlgAES {
		return nil, nil, fmt.Errorf("symmetric algorithm is not AES: %w", ErrWrap)
	}
	mode, err := sym.Mode.AES()
	if err != nil || *mode != tpm2.TPMAlgCFB {
		return nil, nil, fmt.Errorf("symmetric mode is not CFB: %w", ErrWrap)
	}
	bits, err := sym.KeyBits.AES()
	if err != nil {
		return nil, nil, fmt.Errorf("AES key size: %v: %w", err, ErrWrap)
	}
	hash, err := kem.NameAlg().Hash()
	if err != nil {
		return nil, nil, fmt.Errorf("name algorithm: %v: %w", err, ErrWrap)
	}
	if len(inner) > 0xffff {
		return nil, nil, fmt.Errorf("%d bytes to wrap: %w", len(inner), ErrWrap)
	}
	seed, encSeed, err := kem.Encapsulate(rand, label)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(tpm2.KDFa(hash, seed, "STORAGE", name, nil, int(*bits)))
	if err != nil {
		return nil, nil, fmt.Errorf("AES key: %v: %w", err, ErrWrap)
	}
	mac := hmac.New(hash.New, tpm2.KDFa(hash, seed, "INTEGRITY", nil, nil, hash.Size()*8))
	clear(seed)

	// TPM2B(HMAC) ‖ AES-CFB(TPM2B(inner)): the plaintext is laid out in
	// place after the HMAC's room, then encrypted where it lies.
	macSize := mac.Size()
	wrapped = make([]byte, 2+macSize+2+len(inner))
	binary.BigEndian.PutUint16(wrapped, uint16(macSize))
	enc := wrapped[2+macSize:]
	binary.BigEndian.PutUint16(enc, uint16(len(inner)))
	copy(enc[2:], inner)
	cipher.NewCFBEncrypter(block, make([]byte, block.BlockSize())).XORKeyStream(enc, enc)
	mac.Write(enc)
	mac.Write(name)
	mac.Sum(wrapped[:2])
	return wrapped, encSeed, nil
}
