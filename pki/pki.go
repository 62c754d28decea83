// Package pki manages sealroot's own certificate authority and the server
// certificate agents pin, and verifies TPM endorsement-key certificates
// against vendor CA bundles.
//
// # Files
//
// Init writes, in a directory of mode 0700:
//
//	ca.crt      CA certificate (ECDSA P-256, 10 years), 0644: give it to agents
//	ca.key      CA private key (PKCS #8), 0600
//	server.crt  server certificate (ECDSA P-256, 2 years, serverAuth), 0644
//	server.key  server private key (PKCS #8), 0600
//
// Certificates start one hour before Init ran, to tolerate clock skew.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sealroot/sealroot/internal/atomicfile"
)

// File names inside a PKI directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// Validity periods.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 2 * 365 * 24 * time.Hour
	backdate       = time.Hour
)

// ErrExists is returned by Init when the directory already holds a CA.
var ErrExists = errors.New("a CA already exists")

// InitOptions configure Init. The zero value is valid.
type InitOptions struct {
	// DNSNames and IPs are the server certificate's SANs. When both are
	// empty, "localhost", 127.0.0.1 and ::1 are used.
	DNSNames []string
	IPs      []net.IP
	// NewCA replaces an existing CA and server certificate: every agent
	// pins the old CA, so every initramfs must be rebuilt.
	NewCA bool
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// Init creates a CA and a server certificate signed by it in dir. It fails
// with ErrExists if dir already holds a CA, unless opts.NewCA.
func Init(dir string, opts InitOptions) error {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(opts.DNSNames) == 0 && len(opts.IPs) == 0 {
		opts.DNSNames = []string{"localhost"}
		opts.IPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki init: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("pki init: %w", err)
	}
	if !opts.NewCA {
		for _, name := range []string{CACertFile, CAKeyFile} {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				return fmt.Errorf("pki init %s: %w (%s)", dir, ErrExists, name)
			}
		}
	}
	now := opts.Now()
	caKey, caCert, err := newCA(now)
	if err != nil {
		return fmt.Errorf("pki init: %w", err)
	}
	srvKey, srvDER, err := newServer(now, caCert, caKey, opts)
	if err != nil {
		return fmt.Errorf("pki init: %w", err)
	}
	// Server first: a crash in between leaves no CA, so Init can run again.
	for _, f := range []struct {
		name string
		key  crypto.Signer
		der  []byte
	}{
		{ServerKeyFile, srvKey, nil}, {ServerCertFile, nil, srvDER},
		{CAKeyFile, caKey, nil}, {CACertFile, nil, caCert.Raw},
	} {
		if err := writePEM(filepath.Join(dir, f.name), f.key, f.der); err != nil {
			return fmt.Errorf("pki init: %w", err)
		}
	}
	return nil
}

func newCA(now time.Time) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "sealroot CA", Organization: []string{"sealroot"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	return key, cert, nil
}

func newServer(now time.Time, ca *x509.Certificate, caKey crypto.Signer, opts InitOptions) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	der, err := newServerCert(now, ca, caKey, key.Public(), opts)
	return key, der, err
}

// newServerCert signs a server certificate for pub with the CA.
func newServerCert(now time.Time, ca *x509.Certificate, caKey crypto.Signer, pub crypto.PublicKey, opts InitOptions) ([]byte, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "sealroot server", Organization: []string{"sealroot"}},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(ServerValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    opts.DNSNames,
		IPAddresses: opts.IPs,
	}
	der, err := sign(tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	return der, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

// writePEM atomically writes a private key (0600) or a certificate (0644).
func writePEM(path string, key crypto.Signer, certDER []byte) error {
	block, mode := &pem.Block{Type: "CERTIFICATE", Bytes: certDER}, os.FileMode(0o644)
	if key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("encode key %s: %w", path, err)
		}
		block, mode = &pem.Block{Type: "PRIVATE KEY", Bytes: der}, 0o600
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(block), mode)
}

// LoadServer loads the server certificate and key from dir.
func LoadServer(dir string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load server certificate: %w", err)
	}
	return cert, nil
}

// LoadCA loads the CA certificate at path (PEM).
func LoadCA(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("load CA %s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", path, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA %s: not a CA certificate", path)
	}
	return cert, nil
}

// CAPool returns a pool of the PEM certificates in pemBytes, for pinning.
// It fails if there is none.
func CAPool(pemBytes []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("CA pool: no PEM certificate")
	}
	return pool, nil
}
