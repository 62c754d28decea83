package softtpm

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/server/seal"
	"github.com/sealroot/sealroot/wire"
)

// ErrPolicy means the TPM's PCRs are not those the object was sealed to
// (TPM_RC_POLICY_FAIL).
var ErrPolicy = errors.New("softtpm: PCR policy not satisfied")

// Unseal imports the keyed-hash object that tpm2.CreateDuplicate wrapped
// for this TPM's EK (server/seal's credential) and returns its secret if
// the object's authorization policy is PolicyPCR over this TPM's current
// values of pcrs, as TPM2_Import, TPM2_Load, a PolicyPCR session and
// TPM2_Unseal do: public is the object's TPMT_PUBLIC, duplicate the
// TPM2B_PRIVATE contents and inSymSeed the TPM2B_ENCRYPTED_SECRET
// contents (Part 1, 23.3 outer wrapper; Part 3, 23.7 PolicyPCR).
func (t *TPM) Unseal(public, duplicate, inSymSeed []byte, pcrs []int) ([]byte, error) {
	seed, err := rsa.DecryptOAEP(sha256.New(), nil, t.ek, inSymSeed, []byte("DUPLICATE\x00"))
	if err != nil {
		return nil, fmt.Errorf("decrypt seed: %w", ErrBadCredential)
	}
	sum := sha256.Sum256(public)
	name := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMAlgSHA256))
	name = append(name, sum[:]...)
	// TPM2B_PRIVATE: outerHMAC (TPM2B_DIGEST) ‖ encrypted TPM2B_SENSITIVE.
	if len(duplicate) < 2 || int(binary.BigEndian.Uint16(duplicate)) != sha256.Size || len(duplicate) < 2+sha256.Size+2 {
		return nil, fmt.Errorf("duplicate of %d bytes: %w", len(duplicate), ErrBadCredential)
	}
	mac, enc := duplicate[2:2+sha256.Size], duplicate[2+sha256.Size:]
	h := hmac.New(sha256.New, tpm2.KDFa(crypto.SHA256, seed, "INTEGRITY", nil, nil, sha256.Size*8))
	h.Write(enc)
	h.Write(name)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, ErrIntegrity
	}
	block, err := aes.NewCipher(tpm2.KDFa(crypto.SHA256, seed, "STORAGE", name, nil, 128))
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	plain := make([]byte, len(enc))
	cipher.NewCFBDecrypter(block, make([]byte, block.BlockSize())).XORKeyStream(plain, enc) //nolint:staticcheck // TPM 2.0 mandates CFB.
	// TPM2B_SENSITIVE: size ‖ TPMT_SENSITIVE (type, authValue, seedValue, sensitive).
	r := reader{b: plain}
	sens := r.sized()
	r = reader{b: sens}
	r.u16() // sensitiveType
	r.sized()
	r.sized()
	secret := r.sized()
	if r.bad {
		return nil, fmt.Errorf("sensitive area: %w", ErrBadCredential)
	}
	// TPMT_PUBLIC: type, nameAlg, objectAttributes, authPolicy, ...
	r = reader{b: public}
	r.u16()
	r.u16()
	r.u32()
	policy := r.sized()
	if r.bad {
		return nil, fmt.Errorf("public area: %w", ErrBadCredential)
	}
	want, err := seal.PolicyDigest(t.PCRs(pcrs))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	if !hmac.Equal(policy, want) {
		return nil, ErrPolicy
	}
	return append([]byte(nil), secret...), nil
}

// UnsealCredential unseals a server/seal credential's key.
func (t *TPM) UnsealCredential(c *wire.Credential) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("nil credential: %w", ErrBadCredential)
	}
	return t.Unseal(c.Public, c.Duplicate, c.InSymSeed, c.PCRs)
}

// reader reads TPM big-endian fields; bad records a short read.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) sized() []byte { return r.take(int(r.u16())) }
