// Package evidence verifies what a sealroot agent's TPM produces: the
// endorsement key (EK) and attestation key (AK) public areas, credential
// activation for an AK, and PCR quotes.
//
// Everything here is pure Go and needs no TPM. Every function takes input
// straight from the network and never panics on it; each failure wraps a
// documented sentinel error for errors.Is.
//
// # Keys
//
// The EK is the TCG default RSA-2048 EK (tpm2.RSAEKTemplate); any other
// public area is refused. Its public area is accepted only in canonical
// encoding, so MachineID, the SHA-256 of the bytes, names exactly one key.
// The AK is a restricted signing key bound to the TPM (ECDSA P-256 or
// RSASSA-2048, SHA-256); credential activation proves it lives in the same
// TPM as the EK.
package evidence

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/google/go-tpm/tpm2"
)

// Sentinel errors wrapped by the functions of this package.
var (
	ErrBadEK = errors.New("not a TCG default RSA-2048 endorsement key")
	ErrBadAK = errors.New("not an acceptable attestation key")
)

// rsaEKModulusSize is the modulus size of an RSA-2048 EK in bytes.
const rsaEKModulusSize = 256

// MachineID returns the machine identity: the hex SHA-256 of the EK's
// TPMT_PUBLIC bytes.
func MachineID(ekPublic []byte) string {
	sum := sha256.Sum256(ekPublic)
	return hex.EncodeToString(sum[:])
}

// ekPrefix is the encoding of tpm2.RSAEKTemplate up to the modulus: every
// RSA-2048 EK public area is this prefix, the 2-byte modulus size 256, and
// the modulus.
var ekPrefix = sync.OnceValue(func() []byte {
	b := tpm2.Marshal(tpm2.RSAEKTemplate)
	return b[:len(b)-rsaEKModulusSize-2]
})

// ParseEK parses an EK's TPMT_PUBLIC bytes. It accepts only the TCG default
// RSA-2048 EK: the public area of tpm2.RSAEKTemplate (restricted decrypting
// storage key, default EK policy, AES-128-CFB, exponent 65537) with a 2048-bit
// modulus, in canonical encoding. Anything else wraps ErrBadEK.
func ParseEK(ekPublic []byte) (*tpm2.TPMTPublic, error) {
	prefix := ekPrefix()
	if len(ekPublic) != len(prefix)+2+rsaEKModulusSize {
		return nil, fmt.Errorf("EK public area of %d bytes: %w", len(ekPublic), ErrBadEK)
	}
	if !bytes.Equal(ekPublic[:len(prefix)], prefix) {
		return nil, fmt.Errorf("EK public area differs from the default RSA EK template: %w", ErrBadEK)
	}
	rest := ekPublic[len(prefix):]
	if binary.BigEndian.Uint16(rest) != rsaEKModulusSize {
		return nil, fmt.Errorf("EK modulus size field %d: %w", binary.BigEndian.Uint16(rest), ErrBadEK)
	}
	modulus := bytes.Clone(rest[2:])
	if modulus[0]&0x80 == 0 || modulus[len(modulus)-1]&1 == 0 {
		return nil, fmt.Errorf("EK modulus is not an odd 2048-bit number: %w", ErrBadEK)
	}
	pub := tpm2.RSAEKTemplate
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: modulus})
	return &pub, nil
}

// ParseAK parses an AK's TPMT_PUBLIC bytes. The AK must be a restricted
// signing key that cannot leave its TPM and was generated inside it
// (Restricted, SignEncrypt, FixedTPM, FixedParent, SensitiveDataOrigin, not
// Decrypt) with name algorithm SHA-256, and either ECDSA P-256 or RSASSA-2048
// with SHA-256. The encoding must be canonical. Anything else wraps ErrBadAK.
func ParseAK(akPublic []byte) (*tpm2.TPMTPublic, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPublic)
	if err != nil {
		return nil, fmt.Errorf("decode AK public area: %v: %w", err, ErrBadAK)
	}
	if err := checkAKAttributes(pub); err != nil {
		return nil, err
	}
	var canonical *tpm2.TPMTPublic
	switch pub.Type {
	case tpm2.TPMAlgECC:
		canonical, err = canonicalECCAK(pub)
	case tpm2.TPMAlgRSA:
		canonical, err = canonicalRSAAK(pub)
	default:
		err = fmt.Errorf("AK key type %v: %w", pub.Type, ErrBadAK)
	}
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(canonical), akPublic) {
		return nil, fmt.Errorf("AK public area is not canonically encoded: %w", ErrBadAK)
	}
	return canonical, nil
}

func checkAKAttributes(pub *tpm2.TPMTPublic) error {
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("AK name algorithm %v: %w", pub.NameAlg, ErrBadAK)
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.SignEncrypt || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || a.Decrypt {
		return fmt.Errorf("AK attributes %+v: want restricted signing, fixedTPM, fixedParent, sensitiveDataOrigin: %w", a, ErrBadAK)
	}
	return nil
}

func canonicalECCAK(pub *tpm2.TPMTPublic) (*tpm2.TPMTPublic, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("AK ECC parameters: %v: %w", err, ErrBadAK)
	}
	if parms.CurveID != tpm2.TPMECCNistP256 || parms.Symmetric.Algorithm != tpm2.TPMAlgNull ||
		parms.KDF.Scheme != tpm2.TPMAlgNull || parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
		return nil, fmt.Errorf("AK ECC parameters: want P-256 ECDSA, no KDF or symmetric: %w", ErrBadAK)
	}
	scheme, err := parms.Scheme.Details.ECDSA()
	if err != nil || scheme.HashAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("AK ECDSA scheme: want SHA-256: %w", ErrBadAK)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("AK ECC point: %v: %w", err, ErrBadAK)
	}
	if _, err := ecdsaKey(point); err != nil {
		return nil, err
	}
	return &tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: pub.ObjectAttributes,
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: pub.AuthPolicy.Buffer},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: point.X.Buffer},
			Y: tpm2.TPM2BECCParameter{Buffer: point.Y.Buffer},
		}),
	}, nil
}

// ecdsaKey converts a P-256 point, checking that it is on the curve.
func ecdsaKey(point *tpm2.TPMSECCPoint) (*ecdsa.PublicKey, error) {
	const size = 32
	if len(point.X.Buffer) != size || len(point.Y.Buffer) != size {
		return nil, fmt.Errorf("AK P-256 coordinates of %d and %d bytes: %w", len(point.X.Buffer), len(point.Y.Buffer), ErrBadAK)
	}
	uncompressed := make([]byte, 0, 1+2*size)
	uncompressed = append(uncompressed, 4)
	uncompressed = append(uncompressed, point.X.Buffer...)
	uncompressed = append(uncompressed, point.Y.Buffer...)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), uncompressed)
	if err != nil {
		return nil, fmt.Errorf("AK P-256 point: %v: %w", err, ErrBadAK)
	}
	return key, nil
}

func canonicalRSAAK(pub *tpm2.TPMTPublic) (*tpm2.TPMTPublic, error) {
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("AK RSA parameters: %v: %w", err, ErrBadAK)
	}
	if parms.KeyBits != 2048 || parms.Symmetric.Algorithm != tpm2.TPMAlgNull || parms.Scheme.Scheme != tpm2.TPMAlgRSASSA ||
		(parms.Exponent != 0 && parms.Exponent != 65537) {
		return nil, fmt.Errorf("AK RSA parameters: want 2048-bit RSASSA, exponent 65537, no symmetric: %w", ErrBadAK)
	}
	scheme, err := parms.Scheme.Details.RSASSA()
	if err != nil || scheme.HashAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("AK RSASSA scheme: want SHA-256: %w", ErrBadAK)
	}
	modulus, err := pub.Unique.RSA()
	if err != nil {
		return nil, fmt.Errorf("AK RSA modulus: %v: %w", err, ErrBadAK)
	}
	if len(modulus.Buffer) != 256 || modulus.Buffer[0]&0x80 == 0 || modulus.Buffer[255]&1 == 0 {
		return nil, fmt.Errorf("AK RSA modulus is not an odd 2048-bit number: %w", ErrBadAK)
	}
	return &tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: pub.ObjectAttributes,
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: pub.AuthPolicy.Buffer},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits:  2048,
			Exponent: parms.Exponent,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: modulus.Buffer}),
	}, nil
}

// rsaKey converts a 2048-bit RSA AK modulus; ParseAK has checked it.
func rsaKey(pub *tpm2.TPMTPublic) (*rsa.PublicKey, error) {
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("AK RSA parameters: %v: %w", err, ErrBadAK)
	}
	modulus, err := pub.Unique.RSA()
	if err != nil {
		return nil, fmt.Errorf("AK RSA modulus: %v: %w", err, ErrBadAK)
	}
	e := int(parms.Exponent)
	if e == 0 {
		e = 65537
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(modulus.Buffer), E: e}, nil
}

// objectName returns the TPM Name of an object whose canonical TPMT_PUBLIC
// bytes, with name algorithm SHA-256, are public.
func objectName(public []byte) []byte {
	sum := sha256.Sum256(public)
	name := make([]byte, 0, 2+len(sum))
	name = binary.BigEndian.AppendUint16(name, uint16(tpm2.TPMAlgSHA256))
	return append(name, sum[:]...)
}
