package vmtest

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestTPMCACerts(t *testing.T) {
	tp := NewTPM(t)
	certs, err := tp.CACerts()
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 {
		t.Fatalf("CACerts() returned %d certificates, want root and issuer", len(certs))
	}
	root, issuer := certs[0], certs[1]
	if !root.IsCA || !issuer.IsCA {
		t.Errorf("IsCA root=%t issuer=%t, want both", root.IsCA, issuer.IsCA)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := issuer.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("issuer does not chain to root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tp.stateDir(), "tpm2-00.permall")); err != nil {
		t.Errorf("TPM state not written: %v", err)
	}

	t.Run("missing_ca", func(t *testing.T) {
		empty := &TPM{Dir: t.TempDir()}
		if _, err := empty.CACerts(); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("CACerts() without a CA = %v, want os.ErrNotExist", err)
		}
	})
}
