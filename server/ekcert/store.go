package ekcert

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sealroot/sealroot/internal/atomicfile"
	"github.com/sealroot/sealroot/pki"
)

// Dirs is the on-disk EK trust store under one directory (normally
// <state-dir>/ek):
//
//	roots/          manufacturer root CAs (self-signed), PEM, one per file
//	intermediates/  manufacturer intermediate CAs, PEM, one per file
//	certs/          EK certificates, the Source cache (see Files)
type Dirs struct{ Base string }

func (d Dirs) Roots() string         { return filepath.Join(d.Base, "roots") }
func (d Dirs) Intermediates() string { return filepath.Join(d.Base, "intermediates") }
func (d Dirs) Certs() string         { return filepath.Join(d.Base, "certs") }

// Imported counts what Import stored.
type Imported struct {
	Roots, Intermediates, EKCerts int
}

// Import sorts certificates into the store: self-signed CA certificates to
// roots, other CA certificates to intermediates, the rest (EK
// certificates) to the certificate cache. Certificates already there are
// counted again and left as they are.
func (d Dirs) Import(certs []*x509.Certificate) (Imported, error) {
	var n Imported
	cache, err := New(Config{Dir: d.Certs()})
	if err != nil {
		return n, err
	}
	for _, c := range certs {
		switch {
		case c.IsCA && isSelfSigned(c):
			if err := writeCA(d.Roots(), c); err != nil {
				return n, err
			}
			n.Roots++
		case c.IsCA:
			if err := writeCA(d.Intermediates(), c); err != nil {
				return n, err
			}
			n.Intermediates++
		default:
			if err := cache.Put(c); err != nil {
				return n, err
			}
			n.EKCerts++
		}
	}
	return n, nil
}

// LoadCAs returns the pools of imported roots and intermediates; either is
// nil when its directory holds none.
func (d Dirs) LoadCAs() (roots, intermediates *x509.CertPool, err error) {
	if roots, err = loadPool(d.Roots()); err != nil {
		return nil, nil, err
	}
	if intermediates, err = loadPool(d.Intermediates()); err != nil {
		return nil, nil, err
	}
	return roots, intermediates, nil
}

func loadPool(dir string) (*x509.CertPool, error) {
	certs, err := pki.ReadCertificates(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("EK trust store: %w", err)
	}
	if len(certs) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// writeCA writes c to dir as PEM, named by the SHA-256 of its DER.
func writeCA(dir string, c *x509.Certificate) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("EK trust store: %w", err)
	}
	sum := sha256.Sum256(c.Raw)
	path := filepath.Join(dir, hex.EncodeToString(sum[:])+".pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("EK trust store: %w", err)
	}
	return nil
}
