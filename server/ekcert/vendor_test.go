package ekcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// The vectors are go-attestation's (attest/tpm_test.go), taken from real
// certificates the vendors' services served:
// ekop.intel.com/ekcertservice/WVEG2rRwkQ7m3RpXlUphgo6Y2HLxl18h6ZZkkOAdnBE%3D
// (the certificate tpm2-tools' getekcertificate test uses) and
// ftpm.amd.com/pki/aia/D027B3CE6A9B6B56846D2B9935884A88 (a real AMD fTPM).
const (
	intelKeyPEM = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwyDi8kSoYBqs8+AdJsZl
JJk1Vi3h2hl+nn8HbEaWE8+2U+mOwsOG/B0TPyyMbMM4tzLwsgi9g4qHej5bvD4d
QIToNcfIkGocBbTS0w/b68HbrZUPprFlvUtqhkYDFGFkwMT1nUiQEe8fko3upukA
YfPTdeVkYnMVHvYiJSCYvhpKsB3AoSInxgn9rOsRWvQI1Gk6b0mRl3RpWwwSvBih
/3EgpzN7L7XxlR2Lt/CU1bVUwRyVI7MHKf5keH0KE7nmMEiNq039hmNKUnDscvzF
pE3GeajzKTjdgZfina6Dn1tMoPXeJ8lSLCPFThws5XhZUlEYvURwsYGA7veK5CZ7
zQIDAQAB
-----END PUBLIC KEY-----`
	intelID = "WVEG2rRwkQ7m3RpXlUphgo6Y2HLxl18h6ZZkkOAdnBE%3D"

	amdKeyPEM = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAo8ID3MRLZQWgq2WIK1qT
e2HQxzZgiDWn6Tzw6uQOoXI1iyO9pxIailRxll2NeK1lRVP/dEKCV+mGwv75T+y2
MmzpFhUY/O5RtEG8TiocDw6WkHRAJ9A9h1OMP+vD3mPClNoA9/ssB36/0ScmVtYR
0gRkL+cZkAT6qro7xz4eRKLt8KfX6OG/Y9kCfJsKDCtYbc4OavHSf11VgbBLtxm7
jSVE+pnO+x/om6qwACjZbU4qrq4PUbAxD1S9dJ2cZzKaYSsCA8wMIho0umYa3jGv
eptunXDcE993BlsUGjLNbXC4aWVEtgo9yu98gKqhYGFEx7Mtk5NYOvWoNvcUBe2L
2QIDAQAB
-----END PUBLIC KEY-----`
	amdID = "D027B3CE6A9B6B56846D2B9935884A88"
)

func parseRSA(t *testing.T, s string) *rsa.PublicKey {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PublicKey)
}

func TestIntelID(t *testing.T) {
	got, err := IntelID(parseRSA(t, intelKeyPEM))
	if err != nil || got != intelID {
		t.Errorf("IntelID(Intel vector) = %q, %v; want %q", got, err, intelID)
	}
}

func TestAMDIDs(t *testing.T) {
	got, err := AMDIDs(parseRSA(t, amdKeyPEM))
	if err != nil {
		t.Fatalf("AMDIDs = %v", err)
	}
	if want := []string{amdID, strings.ToLower(amdID)}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("AMDIDs(AMD vector) = %q, want %q", got, want)
	}
}

// TestECCIDs: for ECC keys the AMD variants are the truncated and the full
// hash in both cases, and Intel's id is a padded base64url SHA-256.
func TestECCIDs(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := AMDIDs(&k.PublicKey)
	if err != nil {
		t.Fatalf("AMDIDs(P-256) = %v", err)
	}
	if len(ids) != 4 || len(ids[0]) != 32 || len(ids[2]) != 64 || !strings.HasPrefix(ids[2], ids[0]) || ids[1] != strings.ToLower(ids[0]) {
		t.Errorf("AMDIDs(P-256) = %q, want upper/lower 16-byte and upper/lower full hashes", ids)
	}
	id, err := IntelID(&k.PublicKey)
	if err != nil || !strings.HasSuffix(id, "%3D") || len(id) != 43+3 {
		t.Errorf("IntelID(P-256) = %q, %v; want 43 base64url characters and an escaped '='", id, err)
	}
	if _, err := IntelID(&rsa.PublicKey{N: parseRSA(t, amdKeyPEM).N, E: 3}); err == nil {
		t.Error("IntelID(exponent 3) succeeded")
	}
}
