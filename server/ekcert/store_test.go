package ekcert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// intermediate issues a CA certificate under ca.
func (ca *testCA) intermediate(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test vendor intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: crypto.Signer(key)}
}

// TestImport: roots, intermediates and EK certificates land where the
// server reads them, and the EK certificate chains through what was
// imported.
func TestImport(t *testing.T) {
	root := newTestCA(t)
	inter := root.intermediate(t)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := x509.ParseCertificate(inter.issue(t, ek.Public()))
	if err != nil {
		t.Fatal(err)
	}
	d := Dirs{Base: t.TempDir()}
	roots, inters, err := d.LoadCAs()
	if err != nil || roots != nil || inters != nil {
		t.Fatalf("LoadCAs(empty store) = %v, %v, %v; want nothing", roots, inters, err)
	}
	n, err := d.Import([]*x509.Certificate{root.cert, inter.cert, leaf})
	if err != nil {
		t.Fatalf("Import = %v", err)
	}
	if n != (Imported{Roots: 1, Intermediates: 1, EKCerts: 1}) {
		t.Errorf("Import = %+v, want one of each", n)
	}
	if roots, inters, err = d.LoadCAs(); err != nil || roots == nil || inters == nil {
		t.Fatalf("LoadCAs = %v, %v, %v", roots, inters, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("imported EK certificate does not chain through the imported CAs: %v", err)
	}
	src, err := New(Config{Dir: d.Certs()})
	if err != nil {
		t.Fatal(err)
	}
	if _, from, err := src.Lookup(context.Background(), ek.Public()); err != nil || from != "cache" {
		t.Errorf("Lookup(imported EK) = %q, %v; want it from the cache", from, err)
	}
}
