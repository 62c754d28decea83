package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealroot/sealroot/internal/atomicfile"
)

// RequestFile is the certificate request Request writes beside the key.
const RequestFile = "server.csr"

// ErrBadName is returned by Issue for a DNS name or IP address a server
// certificate must not carry.
var ErrBadName = errors.New("bad server name")

// IssueOptions configure Issue.
type IssueOptions struct {
	// DNSNames and IPs are the new server's names; at least one is needed.
	DNSNames []string
	IPs      []net.IP
	// Request is a certificate request made on the new server (Request),
	// so that its private key never leaves it. Its names are ignored: the
	// issuer's DNSNames and IPs count. When nil, Issue generates the key
	// and writes it to the output directory.
	Request *x509.CertificateRequest
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// Issue issues a server certificate for another server from the CA in
// caDir (ca.crt, ca.key, as Init wrote them) and writes, in outDir (mode
// 0700), ca.crt and server.crt, and server.key when opts.Request is nil:
// outDir is the new server's PKI directory, without the CA key. Agents pin
// the CA, so they accept the new server as they accept the first. Issue
// refuses to replace an existing server.crt or server.key in outDir.
func Issue(caDir, outDir string, opts IssueOptions) (*x509.Certificate, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := checkNames(opts.DNSNames, opts.IPs); err != nil {
		return nil, fmt.Errorf("pki issue: %w", err)
	}
	if same, err := sameDir(caDir, outDir); err != nil {
		return nil, fmt.Errorf("pki issue: %w", err)
	} else if same {
		return nil, fmt.Errorf("pki issue: output directory %s is the CA's own: give the new server's directory", outDir)
	}
	caCert, err := LoadCA(filepath.Join(caDir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("pki issue: %w", err)
	}
	caKey, err := loadKey(filepath.Join(caDir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki issue: CA key: %w", err)
	}
	var key crypto.Signer
	pub := crypto.PublicKey(nil)
	if opts.Request != nil {
		if err := opts.Request.CheckSignature(); err != nil {
			return nil, fmt.Errorf("pki issue: certificate request: %w", err)
		}
		pub = opts.Request.PublicKey
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("pki issue: generate server key: %w", err)
		}
		key, pub = k, k.Public()
	}
	if err := prepareOut(outDir, key != nil); err != nil {
		return nil, fmt.Errorf("pki issue: %w", err)
	}
	der, err := newServerCert(opts.Now(), caCert, caKey, pub, InitOptions{DNSNames: opts.DNSNames, IPs: opts.IPs})
	if err != nil {
		return nil, fmt.Errorf("pki issue: %w", err)
	}
	if key != nil {
		if err := writePEM(filepath.Join(outDir, ServerKeyFile), key, nil); err != nil {
			return nil, fmt.Errorf("pki issue: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		der  []byte
	}{{ServerCertFile, der}, {CACertFile, caCert.Raw}} {
		if err := writePEM(filepath.Join(outDir, f.name), nil, f.der); err != nil {
			return nil, fmt.Errorf("pki issue: %w", err)
		}
	}
	return x509.ParseCertificate(der)
}

// prepareOut makes outDir (0700) and refuses to replace a server
// certificate there, or a key when one will be written. A key without a
// certificate is what Request leaves, so it is kept when withKey is false.
func prepareOut(outDir string, withKey bool) error {
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return err
	}
	names := []string{ServerCertFile}
	if withKey {
		names = append(names, ServerKeyFile)
	}
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(outDir, n)); err == nil {
			return fmt.Errorf("%s: %w (a server's certificate is never replaced by issue; use pki renew on that server)",
				filepath.Join(outDir, n), ErrExists)
		}
	}
	return nil
}

func sameDir(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// checkNames fails with ErrBadName unless every name is a plain DNS host
// name (no wildcard, no trailing dot) and every IP a unicast address, and
// there is at least one of either.
func checkNames(dns []string, ips []net.IP) error {
	if len(dns) == 0 && len(ips) == 0 {
		return fmt.Errorf("%w: give the new server's --dns names or --ip addresses", ErrBadName)
	}
	for _, n := range dns {
		if !validHostname(n) {
			return fmt.Errorf("%w: DNS name %q: want letters, digits and hyphens in dot-separated labels of 1-63, no wildcard", ErrBadName, n)
		}
	}
	for _, ip := range ips {
		if ip == nil || ip.IsUnspecified() || ip.IsMulticast() || ip.Equal(net.IPv4bcast) {
			return fmt.Errorf("%w: IP address %v: want a unicast address", ErrBadName, ip)
		}
	}
	return nil
}

func validHostname(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// Request generates a server key in dir (server.key, 0600) and writes a
// certificate request for it (server.csr), for Issue on the server that
// holds the CA key: the private key never leaves this server. It refuses
// to replace an existing key.
func Request(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("pki request: %w", err)
	}
	keyPath := filepath.Join(dir, ServerKeyFile)
	if _, err := os.Lstat(keyPath); err == nil {
		return "", fmt.Errorf("pki request: %s: %w", keyPath, ErrExists)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("pki request: generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "sealroot server", Organization: []string{"sealroot"}},
	}, key)
	if err != nil {
		return "", fmt.Errorf("pki request: %w", err)
	}
	if err := writePEM(keyPath, key, nil); err != nil {
		return "", fmt.Errorf("pki request: %w", err)
	}
	path := filepath.Join(dir, RequestFile)
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644); err != nil {
		return "", fmt.Errorf("pki request: %w", err)
	}
	return path, nil
}

// LoadRequest reads a PEM certificate request and checks its signature.
func LoadRequest(path string) (*x509.CertificateRequest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load certificate request: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("load certificate request %s: no PEM CERTIFICATE REQUEST", path)
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load certificate request %s: %w", path, err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("load certificate request %s: %w", path, err)
	}
	return req, nil
}
