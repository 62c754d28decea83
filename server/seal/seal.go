// Package seal makes sealroot's per-boot sealed credential on the server.
//
// Seal draws a fresh 32-byte key K and wraps it for one TPM: K becomes the
// secret of a keyed-hash (sealed data) object duplicated to the TPM's
// endorsement key, so only that TPM can import it, and the object's
// authorization policy is a PolicyPCR over the PCR values the server
// approved, so the TPM unseals K only in that boot state. The payload itself
// travels encrypted with AES-256-GCM under K; the agent decrypts it with
// OpenPayload after the TPM released K.
//
// Everything here is pure Go; randomness is injected.
package seal

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/wire"
)

// KeySize is the size of the sealed key K.
const KeySize = 32

// NonceSize is the size of the AES-GCM nonce prefixed to the ciphertext.
const NonceSize = wire.PayloadNonceSize

// Sentinel errors.
var (
	// ErrDecrypt means the payload does not decrypt under the key and
	// additional data.
	ErrDecrypt = wire.ErrDecrypt
	// ErrPCRs means the PCR list for the policy is unusable.
	ErrPCRs = errors.New("invalid PCR list for the seal policy")
)

// Seal seals payload to the TPM whose endorsement key is ekPublic (its
// TPMT_PUBLIC bytes, checked with evidence.ParseEK) and to the sha256 PCR
// values pcrs. The caller includes every PCR the TPM must match, including
// PCR 15 as 32 zero bytes. aad is bound into the payload's AEAD.
func Seal(rand io.Reader, ekPublic []byte, pcrs []wire.PCR, payload, aad []byte) (*wire.Credential, error) {
	ek, err := evidence.ParseEK(ekPublic)
	if err != nil {
		return nil, err
	}
	kem, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, fmt.Errorf("EK encapsulation key: %w", err)
	}
	return SealTo(rand, kem, pcrs, payload, aad)
}

// SealTo is Seal for an EK already checked and imported: kem is the EK as
// evidence.Keys.EKEncapsulation returns it. A server that keeps its
// machines' parsed keys seals with it, rebuilding no key per credential.
func SealTo(rand io.Reader, kem tpm2.LabeledEncapsulationKey, pcrs []wire.PCR, payload, aad []byte) (*wire.Credential, error) {
	sorted, err := sortPCRs(pcrs)
	if err != nil {
		return nil, err
	}
	policy, err := policyDigest(sorted)
	if err != nil {
		return nil, err
	}
	// key and seed (the object's obfuscation value) come from one read.
	var secrets [KeySize + sha256.Size]byte
	if _, err := io.ReadFull(rand, secrets[:]); err != nil {
		return nil, fmt.Errorf("sealed key: %w", err)
	}
	key, seed := secrets[:KeySize], secrets[KeySize:]
	public, sensitive := sealedObject(policy, seed, key)
	dup, inSymSeed, err := evidence.CreateDuplicate(rand, kem, objectName(public), sensitive)
	if err != nil {
		return nil, fmt.Errorf("duplicate sealed object: %w", err)
	}
	ciphertext, err := encrypt(rand, key, payload, aad)
	if err != nil {
		return nil, err
	}
	indices := make([]int, len(sorted))
	for i, p := range sorted {
		indices[i] = p.Index
	}
	return &wire.Credential{
		Public:     public,
		Duplicate:  dup,
		InSymSeed:  inSymSeed,
		PCRs:       indices,
		Ciphertext: ciphertext,
	}, nil
}

// sealedObject returns the TPMT_PUBLIC bytes and the TPMT_SENSITIVE bytes of
// a keyed-hash object holding key, usable only through policy: neither
// FixedTPM nor FixedParent (it is imported), no UserWithAuth (the user role
// needs the policy), AdminWithPolicy, NoDA. Both are encoded by hand, not by
// go-tpm's reflection, because Seal is on the server's hot path; a test
// checks the bytes against tpm2.Marshal.
func sealedObject(policy, seed, key []byte) (public, sensitive []byte) {
	unique := sha256.New()
	unique.Write(seed)
	unique.Write(key)
	public = make([]byte, 0, 14+len(policy)+2+sha256.Size)
	public = binary.BigEndian.AppendUint16(public, uint16(tpm2.TPMAlgKeyedHash))
	public = binary.BigEndian.AppendUint16(public, uint16(tpm2.TPMAlgSHA256))
	public = binary.BigEndian.AppendUint32(public, sealedAttributes)
	public = append2B(public, policy)
	public = binary.BigEndian.AppendUint16(public, uint16(tpm2.TPMAlgNull)) // keyed-hash scheme
	public = append2B(public, unique.Sum(nil))

	sensitive = make([]byte, 0, 8+len(seed)+len(key))
	sensitive = binary.BigEndian.AppendUint16(sensitive, uint16(tpm2.TPMAlgKeyedHash))
	sensitive = append2B(sensitive, nil) // authValue
	sensitive = append2B(sensitive, seed)
	sensitive = append2B(sensitive, key)
	return public, sensitive
}

// sealedAttributes are the TPMA_OBJECT bits adminWithPolicy (7) and
// noDA (10).
const sealedAttributes = 1<<7 | 1<<10

// append2B appends b as a TPM2B: a 16-bit size, then the bytes.
func append2B(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// objectName is the TPM Name of an object with name algorithm SHA-256.
func objectName(public []byte) []byte {
	sum := sha256.Sum256(public)
	name := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(sum)), uint16(tpm2.TPMAlgSHA256))
	return append(name, sum[:]...)
}

func encrypt(rand io.Reader, key, payload, aad []byte) ([]byte, error) {
	return wire.SealPayload(rand, key, payload, aad)
}

// OpenPayload decrypts a Credential's Ciphertext with the unsealed key and
// the additional data it was sealed with (see wire.OpenPayload). Any failure
// wraps ErrDecrypt.
func OpenPayload(key, ciphertext, aad []byte) ([]byte, error) {
	return wire.OpenPayload(key, ciphertext, aad)
}

// PolicyDigest returns the SHA-256 policy digest of TPM2_PolicyPCR over the
// sha256 bank values pcrs (any order; hashed in index order): the
// AuthPolicy Seal gives the sealed object.
func PolicyDigest(pcrs []wire.PCR) ([]byte, error) {
	sorted, err := sortPCRs(pcrs)
	if err != nil {
		return nil, err
	}
	return policyDigest(sorted)
}

// policyDigest computes the digest of TPM2_PolicyPCR from an empty policy
// (Part 3, 23.7): SHA-256(zeros ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖
// SHA-256(values)). It is encoded by hand for speed; a test checks it
// against tpm2.PolicyCalculator and a real TPM.
func policyDigest(sorted []wire.PCR) ([]byte, error) {
	values := sha256.New()
	indices := make([]uint, len(sorted))
	for i, p := range sorted {
		values.Write(p.Digest)
		indices[i] = uint(p.Index)
	}
	sel := tpm2.PCClientCompatible.PCRs(indices...)
	msg := make([]byte, 0, sha256.Size+4+4+2+1+len(sel)+sha256.Size)
	msg = append(msg, make([]byte, sha256.Size)...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(tpm2.TPMCCPolicyPCR))
	msg = binary.BigEndian.AppendUint32(msg, 1) // one bank
	msg = binary.BigEndian.AppendUint16(msg, uint16(tpm2.TPMAlgSHA256))
	msg = append(msg, byte(len(sel)))
	msg = append(msg, sel...)
	msg = values.Sum(msg)
	sum := sha256.Sum256(msg)
	return sum[:], nil
}

// sortPCRs returns a copy of pcrs sorted by index after checking that they
// are non-empty, distinct, in range and SHA-256 sized.
func sortPCRs(pcrs []wire.PCR) ([]wire.PCR, error) {
	if len(pcrs) == 0 {
		return nil, fmt.Errorf("no PCRs: %w", ErrPCRs)
	}
	sorted := slices.Clone(pcrs)
	slices.SortFunc(sorted, func(a, b wire.PCR) int { return a.Index - b.Index })
	for i, p := range sorted {
		if p.Index < 0 || p.Index > evidence.MaxPCR || (i > 0 && sorted[i-1].Index == p.Index) {
			return nil, fmt.Errorf("PCR index %d out of range or repeated: %w", p.Index, ErrPCRs)
		}
		if len(p.Digest) != sha256.Size {
			return nil, fmt.Errorf("PCR %d value of %d bytes: %w", p.Index, len(p.Digest), ErrPCRs)
		}
	}
	return sorted, nil
}
