package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Errors of VerifyEKCert, for errors.Is.
var (
	// ErrEKCertUntrusted means the EK certificate does not chain to the
	// vendor roots.
	ErrEKCertUntrusted = errors.New("EK certificate not trusted")
	// ErrEKCertMismatch means the certificate is for another key than the
	// TPM's EK.
	ErrEKCertMismatch = errors.New("EK certificate is for another key")
)

// oidSubjectAltName is the SAN extension. TCG EK certificates mark it
// critical and put only a directoryName (TPM manufacturer, model, version)
// in it, which crypto/x509 leaves unhandled.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// maxBundleFile bounds a CA bundle file.
const maxBundleFile = 16 << 20

// VerifyEKCert checks that the DER EK certificate chains to roots (through
// intermediates, which may be nil) for any key usage and that it certifies
// ekPublic. It fails with ErrEKCertUntrusted or ErrEKCertMismatch.
func VerifyEKCert(der []byte, ekPublic crypto.PublicKey, roots, intermediates *x509.CertPool) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("parse EK certificate: %w", err)
	}
	// Work on a copy: the critical directoryName-only SAN is expected.
	c := *cert
	c.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(c.UnhandledCriticalExtensions),
		func(oid asn1.ObjectIdentifier) bool { return oid.Equal(oidSubjectAltName) })
	if roots == nil {
		return fmt.Errorf("%w: no roots", ErrEKCertUntrusted)
	}
	_, err = c.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrEKCertUntrusted, err)
	}
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || ekPublic == nil || !pub.Equal(ekPublic) {
		return fmt.Errorf("%w (certificate subject %q)", ErrEKCertMismatch, c.Subject)
	}
	return nil
}

// LoadBundle loads vendor CA certificates from files and directories (not
// recursively; in a directory only *.pem, *.crt, *.cer and *.der files are
// read). Each file holds PEM certificates or one or more DER
// certificates. It fails if no certificate is found.
func LoadBundle(paths ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for _, p := range paths {
		files, err := bundleFiles(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			certs, err := readCerts(f)
			if err != nil {
				return nil, fmt.Errorf("load CA bundle: %w", err)
			}
			for _, c := range certs {
				pool.AddCert(c)
			}
			n += len(certs)
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("load CA bundle %q: no certificates", paths)
	}
	return pool, nil
}

// bundleFiles returns p itself, or the regular files directly in p named
// *.pem, *.crt, *.cer or *.der.
func bundleFiles(p string) ([]string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("load CA bundle: %w", err)
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("load CA bundle: %w", err)
	}
	var files []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".pem", ".crt", ".cer", ".der":
		default:
			continue
		}
		path := filepath.Join(p, e.Name())
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			files = append(files, path)
		}
	}
	return files, nil
}

// readCerts parses the PEM certificates in a file, or DER if it has no PEM.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > maxBundleFile {
		return nil, fmt.Errorf("%s: %d bytes is too large", path, len(b))
	}
	var certs []*x509.Certificate
	sawPEM := false
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if sawPEM {
		return certs, nil
	}
	certs, err = x509.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: neither PEM nor DER certificates: %w", path, err)
	}
	return certs, nil
}
