package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"
)

// BenchmarkVerifyEKCert is the server's EK certificate cost per Hello: parse
// the certificate, parse a one-certificate NV chain, verify root ->
// intermediate -> RSA-2048 EK certificate and compare the key.
func BenchmarkVerifyEKCert(b *testing.B) {
	root := newTestCA(b, "vendor root", nil)
	inter := newTestCA(b, "vendor intermediate", root)
	ek, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	der := newEKCert(b, inter, ek.Public())
	chain := [][]byte{inter.cert.Raw}
	roots := root.pool()
	b.ReportAllocs()
	for b.Loop() {
		certs, err := ParseEKChain(chain)
		if err != nil {
			b.Fatal(err)
		}
		pool := roots.Clone()
		pool.AddCert(certs[0])
		if err := VerifyEKCert(der, ek.Public(), roots, pool); err != nil {
			b.Fatal(err)
		}
	}
}
