package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"
)

// testCA is a vendor-like CA for EK certificates.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t testing.TB, name string, parent *testCA) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// tcgSAN is a critical SAN with only a directoryName holding the TCG TPM
// manufacturer, model and version attributes, as in TCG EK certificates.
func tcgSAN(t testing.TB) pkix.Extension {
	t.Helper()
	rdn, err := asn1.Marshal(pkix.RDNSequence{{
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:54455354"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: "swtpm"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 3}, Value: "id:20191023"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	names, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: rdn}})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Critical: true, Value: names}
}

// newEKCert issues an EK-like certificate (empty subject, critical SAN,
// keyEncipherment, tcg-kp-EKCertificate) for pub.
func newEKCert(t testing.TB, issuer *testCA, pub crypto.PublicKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(42),
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		KeyUsage:           x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		ExtraExtensions:    []pkix.Extension{tcgSAN(t)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.cert, pub, issuer.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyEKCert(t *testing.T) {
	root := newTestCA(t, "vendor root", nil)
	inter := newTestCA(t, "vendor intermediate", root)
	other := newTestCA(t, "other root", nil)
	ek, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := newEKCert(t, inter, ek.Public())

	// The certificate reproduces the crypto/x509 problem VerifyEKCert
	// works around.
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: root.pool(), Intermediates: inter.pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if _, ok := err.(x509.UnhandledCriticalExtension); !ok {
		t.Fatalf("plain Verify = %v, want UnhandledCriticalExtension", err)
	}

	tests := []struct {
		name          string
		pub           crypto.PublicKey
		roots, inters *x509.CertPool
		wantErr       error
	}{
		{"valid_chain", ek.Public(), root.pool(), inter.pool(), nil},
		{"intermediate_as_root", ek.Public(), inter.pool(), nil, nil},
		{"mismatched_key", otherKey.Public(), root.pool(), inter.pool(), ErrEKCertMismatch},
		{"nil_key", nil, root.pool(), inter.pool(), ErrEKCertMismatch},
		{"other_ca", ek.Public(), other.pool(), inter.pool(), ErrEKCertUntrusted},
		{"missing_intermediate", ek.Public(), root.pool(), nil, ErrEKCertUntrusted},
		{"no_roots", ek.Public(), nil, nil, ErrEKCertUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyEKCert(der, tt.pub, tt.roots, tt.inters)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("VerifyEKCert = %v, want %v", err, tt.wantErr)
			}
		})
	}
	t.Run("other_critical_extension", func(t *testing.T) {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(43), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtraExtensions: []pkix.Extension{tcgSAN(t), {Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root.cert, ek.Public(), root.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyEKCert(der, ek.Public(), root.pool(), nil); !errors.Is(err, ErrEKCertUntrusted) {
			t.Errorf("VerifyEKCert(unknown critical extension) = %v, want ErrEKCertUntrusted", err)
		}
	})
	if err := VerifyEKCert([]byte("junk"), ek.Public(), root.pool(), nil); err == nil {
		t.Error("VerifyEKCert(junk) succeeded")
	}
}

func TestLoadBundle(t *testing.T) {
	root := newTestCA(t, "vendor root", nil)
	inter := newTestCA(t, "vendor intermediate", root)
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "inter.cer"), inter.cert.Raw, 0o644); err != nil { // DER
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := newEKCert(t, inter, ek.Public())
	pool, err := LoadBundle(dir)
	if err != nil {
		t.Fatalf("LoadBundle(dir): %v", err)
	}
	if err := VerifyEKCert(der, ek.Public(), pool, pool); err != nil {
		t.Errorf("VerifyEKCert with the loaded bundle: %v", err)
	}
	rootOnly, err := LoadBundle(pemFile)
	if err != nil {
		t.Fatalf("LoadBundle(file): %v", err)
	}
	if err := VerifyEKCert(der, ek.Public(), rootOnly, nil); !errors.Is(err, ErrEKCertUntrusted) {
		t.Errorf("VerifyEKCert without the intermediate = %v, want ErrEKCertUntrusted", err)
	}
	if _, err := LoadBundle(t.TempDir()); err == nil {
		t.Error("LoadBundle(empty dir) succeeded")
	}
	if _, err := LoadBundle(filepath.Join(dir, "README")); err == nil {
		t.Error("LoadBundle(not a certificate) succeeded")
	}
}

// TestVerifySwtpmEKCert verifies a real EK certificate made by swtpm_setup
// with swtpm_localca.
func TestVerifySwtpmEKCert(t *testing.T) {
	testenv.RequireTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	d := t.TempDir()
	for _, sub := range []string{"ca", "state", "certs"} {
		if err := os.Mkdir(filepath.Join(d, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"setup.conf":      "create_certs_tool=/usr/bin/swtpm_localca\ncreate_certs_tool_config=" + d + "/localca.conf\ncreate_certs_tool_options=" + d + "/localca.options\nactive_pcr_banks=sha256\n",
		"localca.conf":    "statedir=" + d + "/ca\nsigningkey=" + d + "/ca/signkey.pem\nissuercert=" + d + "/ca/issuercert.pem\ncertserial=" + d + "/ca/certserial\n",
		"localca.options": "--platform-manufacturer Test\n--platform-version 1.0\n--platform-model QEMU\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", filepath.Join(d, "state"), "--config", filepath.Join(d, "setup.conf"),
		"--create-ek-cert", "--write-ek-cert-files", filepath.Join(d, "certs"), "--overwrite")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	certs, err := filepath.Glob(filepath.Join(d, "certs", "ek-*.crt"))
	if err != nil || len(certs) == 0 {
		entries, _ := os.ReadDir(filepath.Join(d, "certs"))
		t.Fatalf("no EK certificate written (%v): %v", err, entries)
	}
	pool, err := LoadBundle(filepath.Join(d, "ca", "swtpm-localca-rootca-cert.pem"), filepath.Join(d, "ca", "issuercert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	other := newTestCA(t, "other root", nil)
	for _, path := range certs {
		t.Run(filepath.Base(path), func(t *testing.T) {
			der, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if block, _ := pem.Decode(der); block != nil {
				der = block.Bytes
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyEKCert(der, cert.PublicKey, pool, pool); err != nil {
				t.Errorf("VerifyEKCert(swtpm EK cert): %v", err)
			}
			if err := VerifyEKCert(der, cert.PublicKey, other.pool(), nil); !errors.Is(err, ErrEKCertUntrusted) {
				t.Errorf("VerifyEKCert(other CA) = %v, want ErrEKCertUntrusted", err)
			}
		})
	}
}

// TestParseEKCertQuirks: certificates as vendors store them in NV parse to
// the same certificate.
func TestParseEKCertQuirks(t *testing.T) {
	root := newTestCA(t, "vendor root", nil)
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := newEKCert(t, root, ek.Public())
	header := append([]byte{0x10, 0x01, 0x00, byte(len(der) >> 8), byte(len(der))}, der...)
	tests := []struct {
		name  string
		in    []byte
		valid bool
	}{
		{"plain_der", der, true},
		{"tcg_nv_header", header, true},
		{"zero_padding", append(bytes.Clone(der), make([]byte, 100)...), true},
		{"ff_padding", append(bytes.Clone(der), bytes.Repeat([]byte{0xff}, 7)...), true},
		{"header_and_padding", append(bytes.Clone(header), 0, 0, 0), true},
		{"header_longer_than_data", header[:len(header)-1], false},
		{"truncated", der[:len(der)-1], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseEKCert(tt.in)
			if !tt.valid {
				if err == nil {
					t.Fatal("ParseEKCert succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEKCert = %v", err)
			}
			if !bytes.Equal(c.Raw, der) {
				t.Errorf("ParseEKCert gave another certificate")
			}
			if err := VerifyEKCert(tt.in, ek.Public(), root.pool(), nil); err != nil {
				t.Errorf("VerifyEKCert = %v", err)
			}
		})
	}
}

// TestParseEKChain: chain indices hold one or more DER certificates each,
// possibly padded.
func TestParseEKChain(t *testing.T) {
	root := newTestCA(t, "vendor root", nil)
	a := newTestCA(t, "intermediate a", root)
	b := newTestCA(t, "intermediate b", a)
	entries := [][]byte{
		append(append(bytes.Clone(a.cert.Raw), b.cert.Raw...), 0, 0),
		append(bytes.Clone(root.cert.Raw), 0xff),
	}
	certs, err := ParseEKChain(entries)
	if err != nil {
		t.Fatalf("ParseEKChain = %v", err)
	}
	var names []string
	for _, c := range certs {
		names = append(names, c.Subject.CommonName)
	}
	if want := []string{"intermediate a", "intermediate b", "vendor root"}; !slices.Equal(names, want) {
		t.Errorf("ParseEKChain subjects = %q, want %q", names, want)
	}
	if _, err := ParseEKChain([][]byte{a.cert.Raw[:100]}); err == nil {
		t.Error("ParseEKChain(truncated) succeeded")
	}
	many := make([][]byte, maxChainCerts+1)
	for i := range many {
		many[i] = a.cert.Raw
	}
	if _, err := ParseEKChain(many); err == nil {
		t.Errorf("ParseEKChain(%d certificates) succeeded, want the limit", len(many))
	}
}
