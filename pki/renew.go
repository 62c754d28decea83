package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// RenewBefore is how long before the server certificate expires that
// CheckValidity starts warning.
const RenewBefore = 30 * 24 * time.Hour

// RenewOptions configure Renew. The zero value keeps the SANs.
type RenewOptions struct {
	// DNSNames and IPs replace the server certificate's SANs when either
	// is set; else the current certificate's are kept.
	DNSNames []string
	IPs      []net.IP
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// Renew issues a new server certificate in dir from the same CA, for the
// same server key, valid ServerValidity from now. Agents keep working: they
// pin the CA, which is unchanged. It returns the new certificate.
func Renew(dir string, opts RenewOptions) (*x509.Certificate, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	caCert, err := LoadCA(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("pki renew: %w", err)
	}
	caKey, err := loadKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki renew: %w", err)
	}
	cur, err := LoadServer(dir)
	if err != nil {
		return nil, fmt.Errorf("pki renew: %w", err)
	}
	leaf, err := ServerLeaf(cur)
	if err != nil {
		return nil, fmt.Errorf("pki renew: %w", err)
	}
	init := InitOptions{DNSNames: opts.DNSNames, IPs: opts.IPs}
	if len(init.DNSNames) == 0 && len(init.IPs) == 0 {
		init.DNSNames, init.IPs = leaf.DNSNames, leaf.IPAddresses
	}
	key, ok := cur.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki renew: server key is no signer")
	}
	der, err := newServerCert(opts.Now(), caCert, caKey, key.Public(), init)
	if err != nil {
		return nil, fmt.Errorf("pki renew: %w", err)
	}
	if err := writePEM(filepath.Join(dir, ServerCertFile), nil, der); err != nil {
		return nil, fmt.Errorf("pki renew: %w", err)
	}
	return x509.ParseCertificate(der)
}

func loadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

// Validity is where a certificate stands at a time.
type Validity int

const (
	Valid       Validity = iota
	ExpiresSoon          // within RenewBefore
	Expired
	NotYetValid
)

// CheckValidity says whether c is valid at now and, when it is not or
// expires within RenewBefore, a message for the operator naming the
// dates and the fix.
func CheckValidity(c *x509.Certificate, now time.Time) (Validity, string) {
	const day = "2006-01-02 15:04 MST"
	switch {
	case now.Before(c.NotBefore):
		return NotYetValid, fmt.Sprintf("the server certificate is not valid until %s (the clock says %s): every agent refuses this server; check the clock, or run `sealroot pki renew`",
			c.NotBefore.UTC().Format(day), now.UTC().Format(day))
	case !now.Before(c.NotAfter):
		return Expired, fmt.Sprintf("the server certificate EXPIRED on %s: every agent refuses this server; run `sealroot pki renew` and restart sealroot",
			c.NotAfter.UTC().Format(day))
	case c.NotAfter.Sub(now) < RenewBefore:
		return ExpiresSoon, fmt.Sprintf("the server certificate expires on %s (in %d days): run `sealroot pki renew` and restart sealroot",
			c.NotAfter.UTC().Format(day), int(c.NotAfter.Sub(now).Hours()/24))
	}
	return Valid, ""
}

// ServerLeaf returns the parsed leaf of a loaded server certificate.
func ServerLeaf(c tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, fmt.Errorf("no certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}
