package ekcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
)

// The vendors' public services, for Config.IntelURL and Config.AMDURL.
const (
	IntelServiceURL = "https://ekop.intel.com/ekcertservice/"
	AMDServiceURL   = "https://ftpm.amd.com/pki/aia/"
)

// IntelID is the path element under which Intel's EK certificate service
// serves the certificate of ek (Intel PTT before 11th-generation Core): the
// URL-escaped base64url (padded) SHA-256 of the RSA modulus followed by the
// exponent 65537 as 3 bytes, or of an ECC key's X and Y.
func IntelID(ek crypto.PublicKey) (string, error) {
	h := sha256.New()
	switch k := ek.(type) {
	case *rsa.PublicKey:
		if k.E != 65537 {
			return "", fmt.Errorf("intel EK certificate id: RSA exponent %d, want 65537", k.E)
		}
		h.Write(k.N.Bytes())
		h.Write([]byte{0x01, 0x00, 0x01})
	case *ecdsa.PublicKey:
		x, y, err := eccCoordinates(k)
		if err != nil {
			return "", fmt.Errorf("intel EK certificate id: %w", err)
		}
		h.Write(x)
		h.Write(y)
	default:
		return "", fmt.Errorf("intel EK certificate id: unsupported key %T", ek)
	}
	return url.QueryEscape(base64.URLEncoding.EncodeToString(h.Sum(nil))), nil
}

// AMDIDs are the path elements under which AMD's fTPM AIA service may serve
// the certificate of ek, most likely first: hex of the first 16 bytes of
// SHA-256(00 00 22 22 || exponent (4 bytes) || modulus) for RSA, or of
// SHA-256(00 00 44 44 || X || Y) for ECC. The reference tools disagree on
// case (tpm2-tools lower, go-attestation upper) and, for ECC, on truncation
// (go-attestation leaves the hash whole), so every variant is returned.
func AMDIDs(ek crypto.PublicKey) ([]string, error) {
	h := sha256.New()
	ecc := false
	switch k := ek.(type) {
	case *rsa.PublicKey:
		h.Write([]byte{0x00, 0x00, 0x22, 0x22})
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(k.E)))
		h.Write(k.N.Bytes())
	case *ecdsa.PublicKey:
		x, y, err := eccCoordinates(k)
		if err != nil {
			return nil, fmt.Errorf("AMD EK certificate id: %w", err)
		}
		h.Write([]byte{0x00, 0x00, 0x44, 0x44})
		h.Write(x)
		h.Write(y)
		ecc = true
	default:
		return nil, fmt.Errorf("AMD EK certificate id: unsupported key %T", ek)
	}
	sum := h.Sum(nil)
	short := hex.EncodeToString(sum[:16])
	ids := []string{strings.ToUpper(short), short}
	if ecc {
		ids = append(ids, strings.ToUpper(hex.EncodeToString(sum)), hex.EncodeToString(sum))
	}
	return ids, nil
}

// eccCoordinates returns X and Y at the curve's full byte size, as the TPM
// encodes them.
func eccCoordinates(k *ecdsa.PublicKey) (x, y []byte, err error) {
	b, err := k.Bytes() // 04 || X || Y
	if err != nil {
		return nil, nil, err
	}
	n := (len(b) - 1) / 2
	return b[1 : 1+n], b[1+n:], nil
}
