// Package ektemplate names the endorsement keys (EKs) a TPM can carry a
// manufacturer certificate for: the NV index of each key's certificate and
// the template that re-creates the key (TCG EK Credential Profile for TPM
// Family 2.0, section 2.2.1.4 "Low Range" and 2.2.1.5 "High Range").
//
// The agent walks Kinds in order, uses the first kind whose certificate is
// in NV (RSA-2048 before ECC P-256, as the profile's order), and re-creates
// that EK from its template; the server accepts exactly the public areas
// these templates yield. Both templates come from go-tpm and share the
// default EK policy, TPM2_PolicySecret(TPM_RH_ENDORSEMENT).
//
// # Not supported
//
// High-range templates (0x01C00012 and up: RSA-2048, P-256, P-384, RSA-3072,
// ...) carry a different policy (PolicyB, a PolicyOR over PolicyA and
// PolicyC) and userWithAuth. Their certificate indices are listed in
// HighRangeIndices so the agent can report them, but the agent does not
// create those keys: a TPM with only high-range certificates is treated as
// having none, and its low-range EK is used without a certificate.
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

// The supported kinds (low range).
var (
	RSA2048 = Kind{Name: "rsa2048", CertIndex: 0x01C00002, Template: tpm2.RSAEKTemplate}
	ECCP256 = Kind{Name: "p256", CertIndex: 0x01C0000A, Template: tpm2.ECCEKTemplate}
)

// Kinds returns the supported kinds in the agent's order of preference.
func Kinds() []Kind { return []Kind{RSA2048, ECCP256} }

// The EK certificate chain range: each index holds one or more DER
// certificates (intermediates up to the manufacturer's root), as Intel PTT
// from 11th-generation Core on stores its on-die CA chain.
const (
	ChainFirst = 0x01C00100
	ChainLast  = 0x01C001FF
)

// HighRangeIndices are the high-range certificate indices (RSA-2048, P-256,
// P-384, P-521, SM2, RSA-3072, RSA-4096), for reporting.
var HighRangeIndices = []uint32{0x01C00012, 0x01C00014, 0x01C00016, 0x01C00018, 0x01C0001A, 0x01C0001C, 0x01C0001E}

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
