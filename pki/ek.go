package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
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

// tcgNVHeader starts an EK certificate stored with the TCG NV header (PC
// Client Platform TPM Profile, 7.3.2): these 3 bytes, then the
// certificate's length as 2 bytes, big endian.
var tcgNVHeader = []byte{0x10, 0x01, 0x00}

// ParseEKCert parses an EK certificate as TPMs store it in NV: DER, possibly
// behind the TCG NV header and possibly followed by padding (both seen in
// vendors' TPMs). Only the first DER element is parsed.
func ParseEKCert(b []byte) (*x509.Certificate, error) {
	if bytes.HasPrefix(b, tcgNVHeader) && len(b) >= 5 {
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if len(b) < 5+n {
			return nil, fmt.Errorf("parse EK certificate: NV header says %d bytes, %d follow", n, len(b)-5)
		}
		b = b[5 : 5+n]
	}
	var elem asn1.RawValue
	if _, err := asn1.Unmarshal(b, &elem); err != nil {
		return nil, fmt.Errorf("parse EK certificate: %w", err)
	}
	c, err := x509.ParseCertificate(elem.FullBytes)
	if err != nil {
		return nil, fmt.Errorf("parse EK certificate: %w", err)
	}
	return c, nil
}

// maxChainCerts bounds the certificates taken from a TPM's chain indices.
const maxChainCerts = 16

// ParseEKChain parses the contents of a TPM's EK certificate chain indices,
// each one or more concatenated DER certificates, possibly padded.
func ParseEKChain(entries [][]byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for i, e := range entries {
		for rest := e; len(rest) > 0 && rest[0] == 0x30; {
			if len(certs) == maxChainCerts {
				return nil, fmt.Errorf("EK certificate chain: more than %d certificates", maxChainCerts)
			}
			var elem asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &elem); err != nil {
				return nil, fmt.Errorf("EK certificate chain entry %d: %w", i, err)
			}
			c, err := x509.ParseCertificate(elem.FullBytes)
			if err != nil {
				return nil, fmt.Errorf("EK certificate chain entry %d: %w", i, err)
			}
			certs = append(certs, c)
		}
	}
	return certs, nil
}

// VerifyEKCert checks that the EK certificate (as ParseEKCert accepts it)
// chains to roots (through intermediates, which may be nil) for any key
// usage and that it certifies ekPublic. It fails with ErrEKCertUntrusted or
// ErrEKCertMismatch.
func VerifyEKCert(der []byte, ekPublic crypto.PublicKey, roots, intermediates *x509.CertPool) error {
	cert, err := ParseEKCert(der)
	if err != nil {
		return err
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
	certs, err := ReadCertificates(paths...)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("load CA bundle %q: no certificates", paths)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// ReadCertificates reads the certificates in files and directories as
// LoadBundle does; it may return none.
func ReadCertificates(paths ...string) ([]*x509.Certificate, error) {
	var all []*x509.Certificate
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
			all = append(all, certs...)
		}
	}
	return all, nil
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
