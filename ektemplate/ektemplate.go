// Package ektemplate names the endorsement keys (EKs) a TPM can carry a
// manufacturer certificate for: the NV index of each key's certificate and
// the template that re-creates the key (TCG EK Credential Profile for TPM
// Family 2.0, section 2.2.1.4 "Low Range" and 2.2.1.5 "High Range").
//
// The agent walks Kinds in order (the profile's: RSA-2048, ECC P-256, ECC
// P-384, RSA-3072), uses the first kind whose certificate is in NV, and
// re-creates that EK from its template; the server accepts exactly the
// public areas these templates yield.
//
// Low-range templates (go-tpm's tpm2.RSAEKTemplate, tpm2.ECCEKTemplate)
// carry PolicyA, TPM2_PolicySecret(TPM_RH_ENDORSEMENT), and no
// userWithAuth: using the key needs that policy. High-range templates (H-3
// P-384, H-6 RSA-3072) set userWithAuth with an empty authValue, so the key
// is used with a password session, no endorsement authorization; their
// policy is PolicyB (SHA-384).
//
// # Not supported
//
// The high-range RSA-2048 (0x01C00012), P-256 (0x01C00014), P-521, SM2 and
// RSA-4096 templates. Their certificate indices are in
// UnsupportedIndices, for reporting.
package ektemplate

import (
	"bytes"

	"github.com/google/go-tpm/tpm2"
)

// Kind is one endorsement key type.
type Kind struct {
	// Name is short and stable: "rsa2048" or "p256".
	Name string
	// CertIndex is the NV index of the key's certificate.
	CertIndex uint32
	// Template re-creates the key under the endorsement hierarchy.
	Template tpm2.TPMTPublic
}

// The supported kinds.
var (
	RSA2048 = Kind{Name: "rsa2048", CertIndex: 0x01C00002, Template: tpm2.RSAEKTemplate}
	ECCP256 = Kind{Name: "p256", CertIndex: 0x01C0000A, Template: tpm2.ECCEKTemplate}
	ECCP384 = Kind{Name: "p384", CertIndex: 0x01C00016, Template: eccP384Template}
	RSA3072 = Kind{Name: "rsa3072", CertIndex: 0x01C0001C, Template: rsa3072Template}
)

// Kinds returns the supported kinds in the agent's order of preference.
func Kinds() []Kind { return []Kind{RSA2048, ECCP256, ECCP384, RSA3072} }

// UsesPassword reports whether the key is used with an (empty) password,
// as high-range EKs are, rather than the endorsement policy.
func (k Kind) UsesPassword() bool { return k.Template.ObjectAttributes.UserWithAuth }

// policyBSHA384 is the high-range templates' authPolicy (EK Credential
// Profile, PolicyB for SHA-384).
var policyBSHA384 = []byte{
	0xB2, 0x6E, 0x7D, 0x28, 0xD1, 0x1A, 0x50, 0xBC, 0x53, 0xD8, 0x82, 0xBC,
	0xF5, 0xFD, 0x3A, 0x1A, 0x07, 0x41, 0x48, 0xBB, 0x35, 0xD3, 0xB4, 0xE4,
	0xCB, 0x1C, 0x0A, 0xD9, 0xBD, 0xE4, 0x19, 0xCA, 0xCB, 0x47, 0xBA, 0x09,
	0x69, 0x96, 0x46, 0x15, 0x0F, 0x9F, 0xC0, 0x00, 0xF3, 0xF8, 0x0E, 0x12,
}

// highRangeAttributes: fixedTPM, fixedParent, sensitiveDataOrigin,
// userWithAuth, adminWithPolicy, restricted, decrypt.
var highRangeAttributes = tpm2.TPMAObject{
	FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
	UserWithAuth: true, AdminWithPolicy: true, Restricted: true, Decrypt: true,
}

var aes256CFB = tpm2.TPMTSymDefObject{
	Algorithm: tpm2.TPMAlgAES,
	KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(256)),
	Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
}

// eccP384Template is template H-3: ECC NIST P-384, SHA-384, AES-256-CFB,
// empty unique.
var eccP384Template = tpm2.TPMTPublic{
	Type:             tpm2.TPMAlgECC,
	NameAlg:          tpm2.TPMAlgSHA384,
	ObjectAttributes: highRangeAttributes,
	AuthPolicy:       tpm2.TPM2BDigest{Buffer: policyBSHA384},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: aes256CFB,
		Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
		CurveID:   tpm2.TPMECCNistP384,
		KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// rsa3072Template is template H-6: RSA-3072, SHA-384, AES-256-CFB, empty
// unique.
var rsa3072Template = tpm2.TPMTPublic{
	Type:             tpm2.TPMAlgRSA,
	NameAlg:          tpm2.TPMAlgSHA384,
	ObjectAttributes: highRangeAttributes,
	AuthPolicy:       tpm2.TPM2BDigest{Buffer: policyBSHA384},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Symmetric: aes256CFB,
		Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
		KeyBits:   3072,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
}

// The EK certificate chain range: each index holds one or more DER
// certificates (intermediates up to the manufacturer's root), as Intel PTT
// from 11th-generation Core on stores its on-die CA chain.
const (
	ChainFirst = 0x01C00100
	ChainLast  = 0x01C001FF
)

// UnsupportedIndices are the high-range certificate indices of kinds this
// package cannot re-create (RSA-2048, P-256, P-521, SM2, RSA-4096).
var UnsupportedIndices = []uint32{0x01C00012, 0x01C00014, 0x01C00018, 0x01C0001A, 0x01C0001E}

// Of returns the kind whose template pub was created from: pub equals the
// template in everything but the unique field.
func Of(pub *tpm2.TPMTPublic) (Kind, bool) {
	for _, k := range Kinds() {
		if pub.Type != k.Template.Type {
			continue
		}
		t := *pub
		t.Unique = k.Template.Unique
		if bytes.Equal(tpm2.Marshal(t), tpm2.Marshal(k.Template)) {
			return k, true
		}
	}
	return Kind{}, false
}
