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
// The EK is one of the TCG EKs package ektemplate re-creates: RSA-2048, ECC
// P-256, ECC P-384 or RSA-3072; any other public area is refused. Its public area is accepted only in canonical
// encoding, so wire.MachineID, the SHA-256 of the bytes, names exactly one key.
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
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/ektemplate"
)

// Sentinel errors wrapped by the functions of this package.
var (
	ErrBadEK = errors.New("not a supported TCG endorsement key")
	ErrBadAK = errors.New("not an acceptable attestation key")
)

// ekShape is the encoding of one supported EK template up to its unique
// field, and the size of the key material that follows: the modulus (RSA)
// or each coordinate (ECC), each as a TPM2B.
type ekShape struct {
	kind   ektemplate.Kind
	prefix []byte
	size   int
	curve  elliptic.Curve // nil for RSA
}

var ekShapes = sync.OnceValue(func() []ekShape {
	var shapes []ekShape
	for _, k := range ektemplate.Kinds() {
		t := k.Template
		sh := ekShape{kind: k}
		if t.Type == tpm2.TPMAlgRSA {
			parms, _ := t.Parameters.RSADetail()
			t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
			sh.size = int(parms.KeyBits) / 8
			b := tpm2.Marshal(t)
			sh.prefix = b[:len(b)-2]
		} else {
			parms, _ := t.Parameters.ECCDetail()
			t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{})
			sh.curve = elliptic.P256()
			if parms.CurveID == tpm2.TPMECCNistP384 {
				sh.curve = elliptic.P384()
			}
			sh.size = (sh.curve.Params().BitSize + 7) / 8
			b := tpm2.Marshal(t)
			sh.prefix = b[:len(b)-4]
		}
		shapes = append(shapes, sh)
	}
	return shapes
})

// ParseEK parses an EK's TPMT_PUBLIC bytes. It accepts only the public
// areas of the ektemplate kinds' templates, in canonical encoding: RSA-2048
// and ECC P-256 (low range, default EK policy, AES-128-CFB) and ECC P-384
// and RSA-3072 (high range, PolicyB, AES-256-CFB), with an odd modulus of
// full size (exponent 65537) or a point on the curve. Anything else wraps
// ErrBadEK.
func ParseEK(ekPublic []byte) (*tpm2.TPMTPublic, error) {
	for _, sh := range ekShapes() {
		if bytes.HasPrefix(ekPublic, sh.prefix) {
			return sh.parse(ekPublic[len(sh.prefix):])
		}
	}
	return nil, fmt.Errorf("EK public area of %d bytes matches no supported EK template: %w", len(ekPublic), ErrBadEK)
}

// parse reads the unique field of sh's public area.
func (sh ekShape) parse(rest []byte) (*tpm2.TPMTPublic, error) {
	r := reader{b: rest}
	pub := sh.kind.Template
	if sh.curve == nil {
		modulus := r.sized()
		if r.short || len(r.b) != 0 {
			return nil, fmt.Errorf("%s EK modulus truncated or with %d trailing bytes: %w", sh.kind.Name, len(r.b), ErrBadEK)
		}
		if len(modulus) != sh.size || modulus[0]&0x80 == 0 || modulus[len(modulus)-1]&1 == 0 {
			return nil, fmt.Errorf("%s EK modulus is not an odd %d-bit number: %w", sh.kind.Name, 8*sh.size, ErrBadEK)
		}
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: modulus})
		return &pub, nil
	}
	x, y := r.sized(), r.sized()
	if r.short || len(r.b) != 0 {
		return nil, fmt.Errorf("%s EK point truncated or with %d trailing bytes: %w", sh.kind.Name, len(r.b), ErrBadEK)
	}
	if len(x) != sh.size || len(y) != sh.size {
		return nil, fmt.Errorf("%s EK coordinates of %d and %d bytes: %w", sh.kind.Name, len(x), len(y), ErrBadEK)
	}
	uncompressed := append(append([]byte{4}, x...), y...)
	if _, err := ecdsa.ParseUncompressedPublicKey(sh.curve, uncompressed); err != nil {
		return nil, fmt.Errorf("%s EK point: %v: %w", sh.kind.Name, err, ErrBadEK)
	}
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: y}})
	return &pub, nil
}

// ParseAK parses an AK's TPMT_PUBLIC bytes. The AK must be a restricted
// signing key that cannot leave its TPM and was generated inside it
// (Restricted, SignEncrypt, FixedTPM, FixedParent, SensitiveDataOrigin, not
// Decrypt) with name algorithm SHA-256, and either ECDSA P-256 or RSASSA-2048
// with SHA-256. The encoding must be canonical. Anything else wraps ErrBadAK.
//
// ParseAK decodes by hand rather than with go-tpm's reflection: it runs for
// every quote on the server's hot path.
func ParseAK(akPublic []byte) (*tpm2.TPMTPublic, error) {
	r := reader{b: akPublic}
	typ, nameAlg, attrBits, policy := tpm2.TPMAlgID(r.u16()), tpm2.TPMAlgID(r.u16()), r.u32(), r.sized()
	if r.short {
		return nil, fmt.Errorf("AK public area of %d bytes is truncated: %w", len(akPublic), ErrBadAK)
	}
	if nameAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("AK name algorithm %v: %w", nameAlg, ErrBadAK)
	}
	attrs, err := akAttributes(attrBits)
	if err != nil {
		return nil, err
	}
	var pub *tpm2.TPMTPublic
	switch typ {
	case tpm2.TPMAlgECC:
		pub, err = parseECCAK(&r)
	case tpm2.TPMAlgRSA:
		pub, err = parseRSAAK(&r)
	default:
		err = fmt.Errorf("AK key type %v: %w", typ, ErrBadAK)
	}
	if err != nil {
		return nil, err
	}
	if r.short || len(r.b) != 0 {
		return nil, fmt.Errorf("AK public area truncated or with %d trailing bytes: %w", len(r.b), ErrBadAK)
	}
	pub.ObjectAttributes = attrs
	pub.AuthPolicy = tpm2.TPM2BDigest{Buffer: policy}
	return pub, nil
}

// TPMA_OBJECT bits (Part 2, 8.3).
const (
	attrFixedTPM            = 1 << 1
	attrSTClear             = 1 << 2
	attrFixedParent         = 1 << 4
	attrSensitiveDataOrigin = 1 << 5
	attrUserWithAuth        = 1 << 6
	attrAdminWithPolicy     = 1 << 7
	attrNoDA                = 1 << 10
	attrEncryptedDup        = 1 << 11
	attrRestricted          = 1 << 16
	attrDecrypt             = 1 << 17
	attrSignEncrypt         = 1 << 18

	akRequired = attrFixedTPM | attrFixedParent | attrSensitiveDataOrigin | attrRestricted | attrSignEncrypt
	akAllowed  = akRequired | attrSTClear | attrUserWithAuth | attrAdminWithPolicy | attrNoDA
)

// akAttributes checks an AK's TPMA_OBJECT: all of akRequired, nothing
// outside akAllowed (so neither Decrypt nor a reserved bit).
func akAttributes(bits uint32) (tpm2.TPMAObject, error) {
	if bits&akRequired != akRequired || bits&^akAllowed != 0 {
		return tpm2.TPMAObject{}, fmt.Errorf("AK attributes %#x: want restricted signing, fixedTPM, fixedParent, sensitiveDataOrigin, not decrypt: %w", bits, ErrBadAK)
	}
	return tpm2.TPMAObject{
		FixedTPM:            true,
		STClear:             bits&attrSTClear != 0,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        bits&attrUserWithAuth != 0,
		AdminWithPolicy:     bits&attrAdminWithPolicy != 0,
		NoDA:                bits&attrNoDA != 0,
		Restricted:          true,
		SignEncrypt:         true,
	}, nil
}

// parseECCAK reads the TPMS_ECC_PARMS and TPMS_ECC_POINT of an ECDSA
// P-256/SHA-256 AK.
func parseECCAK(r *reader) (*tpm2.TPMTPublic, error) {
	sym, scheme, hash, curve, kdf := r.u16(), r.u16(), r.u16(), r.u16(), r.u16()
	x, y := r.sized(), r.sized()
	if r.short {
		return nil, fmt.Errorf("AK ECC parameters truncated: %w", ErrBadAK)
	}
	if tpm2.TPMAlgID(sym) != tpm2.TPMAlgNull || tpm2.TPMAlgID(scheme) != tpm2.TPMAlgECDSA || tpm2.TPMAlgID(hash) != tpm2.TPMAlgSHA256 ||
		tpm2.TPMECCCurve(curve) != tpm2.TPMECCNistP256 || tpm2.TPMAlgID(kdf) != tpm2.TPMAlgNull {
		return nil, fmt.Errorf("AK ECC parameters: want P-256 ECDSA SHA-256, no KDF or symmetric: %w", ErrBadAK)
	}
	point := &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: y}}
	if _, err := ecdsaKey(point); err != nil {
		return nil, err
	}
	return &tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, point),
	}, nil
}

// ecdsaKey converts an AK's P-256 point, checking that it is on the curve.
func ecdsaKey(point *tpm2.TPMSECCPoint) (*ecdsa.PublicKey, error) {
	key, err := p256Key(point)
	if err != nil {
		return nil, fmt.Errorf("AK %v: %w", err, ErrBadAK)
	}
	return key, nil
}

// p256Key converts a P-256 point, checking that it is on the curve.
func p256Key(point *tpm2.TPMSECCPoint) (*ecdsa.PublicKey, error) {
	const size = 32
	if len(point.X.Buffer) != size || len(point.Y.Buffer) != size {
		return nil, fmt.Errorf("P-256 coordinates of %d and %d bytes", len(point.X.Buffer), len(point.Y.Buffer))
	}
	uncompressed := make([]byte, 0, 1+2*size)
	uncompressed = append(uncompressed, 4)
	uncompressed = append(uncompressed, point.X.Buffer...)
	uncompressed = append(uncompressed, point.Y.Buffer...)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), uncompressed)
	if err != nil {
		return nil, fmt.Errorf("P-256 point: %v", err)
	}
	return key, nil
}

// parseRSAAK reads the TPMS_RSA_PARMS and modulus of an RSASSA-2048/SHA-256
// AK.
func parseRSAAK(r *reader) (*tpm2.TPMTPublic, error) {
	sym, scheme, hash, bits, exponent := r.u16(), r.u16(), r.u16(), r.u16(), r.u32()
	modulus := r.sized()
	if r.short {
		return nil, fmt.Errorf("AK RSA parameters truncated: %w", ErrBadAK)
	}
	if tpm2.TPMAlgID(sym) != tpm2.TPMAlgNull || tpm2.TPMAlgID(scheme) != tpm2.TPMAlgRSASSA || tpm2.TPMAlgID(hash) != tpm2.TPMAlgSHA256 ||
		bits != 2048 || (exponent != 0 && exponent != 65537) {
		return nil, fmt.Errorf("AK RSA parameters: want 2048-bit RSASSA SHA-256, exponent 65537, no symmetric: %w", ErrBadAK)
	}
	if len(modulus) != 256 || modulus[0]&0x80 == 0 || modulus[255]&1 == 0 {
		return nil, fmt.Errorf("AK RSA modulus is not an odd 2048-bit number: %w", ErrBadAK)
	}
	return &tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits:  2048,
			Exponent: exponent,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: modulus}),
	}, nil
}

// reader decodes big-endian TPM fields; reading past the end sets short
// and yields zeros.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) next(n int) []byte {
	if r.short || len(r.b) < n {
		r.short = true
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) u16() uint16 {
	if b := r.next(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.next(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u8() uint8 {
	if b := r.next(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.next(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// view reads a TPM2B and returns its contents, aliasing r's bytes.
func (r *reader) view() []byte {
	n := r.u16()
	return r.next(int(n))
}

// sized reads a TPM2B and returns a copy of its contents.
func (r *reader) sized() []byte {
	n := r.u16()
	return bytes.Clone(r.next(int(n)))
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
