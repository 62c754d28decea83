package attest

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/ekcert"
	"github.com/sealroot/sealroot/wire"
)

// EKCertSource supplies EK certificates TPMs do not carry (ekcert.Source).
type EKCertSource interface {
	// Lookup returns ek's DER certificate and where it came from, or an
	// error wrapping ekcert.ErrNotFound.
	Lookup(ctx context.Context, ek crypto.PublicKey) (der []byte, from string, err error)
}

// EK certificate outcomes recorded per machine (store.Machine.EKCertStatus)
// start with one of these words; refused TPMs are not recorded.
const (
	ekCertVerified    = "verified"
	ekCertNotVerified = "not verified"
)

// checkEKCert decides on the certificate of the TPM's EK, pub: the one it
// sent, or one from s.ekCerts. It returns the certificate and the outcome to record, or
// a Failure when the TPM is refused:
//   - a certificate that certifies another key is refused, with or
//     without manufacturer roots; one that does not parse is refused when
//     there are roots or a certificate is required, else not verified;
//   - with roots, a certificate that does not chain to them (through the
//     configured intermediates and those in the TPM's NV) is refused;
//   - with RequireEKCert, no certificate is refused.
//
// Otherwise the outcome is "verified (...)" or "not verified: why".
func (s *Server) checkEKCert(ctx context.Context, pub crypto.PublicKey, h *wire.Hello) ([]byte, string, error) {
	der, from := h.EKCert, "TPM NV"
	if len(der) == 0 && s.ekCerts != nil {
		var err error
		der, from, err = s.ekCerts.Lookup(ctx, pub)
		if err != nil && !errors.Is(err, ekcert.ErrNotFound) {
			s.logger.Warn("EK certificate lookup failed", "error", err)
		}
	}
	if len(der) == 0 {
		if s.requireEKCert {
			return nil, "", fail("ek-certificate", errors.New("TPM has no EK certificate and the server requires one"))
		}
		return nil, ekCertNotVerified + ": no EK certificate (in NV or from a configured source)", nil
	}
	cert, err := pki.ParseEKCert(der)
	if err != nil {
		if s.ekRoots == nil && !s.requireEKCert {
			// Nothing depends on it: keep the TPM usable (vendors' NV
			// certificates are not always strict DER).
			return nil, ekCertNotVerified + ": " + err.Error(), nil
		}
		return nil, "", fail("ek-certificate", err)
	}
	if !publicKeyEqual(cert.PublicKey, pub) {
		return nil, "", fail("ek-certificate", fmt.Errorf("%w (certificate subject %q)", pki.ErrEKCertMismatch, cert.Subject))
	}
	if s.ekRoots == nil {
		return cert.Raw, ekCertNotVerified + ": no manufacturer roots configured", nil
	}
	inters, err := s.intermediates(h.EKChain)
	if err != nil {
		return nil, "", fail("ek-certificate", err)
	}
	if err := pki.VerifyEKCert(cert.Raw, pub, s.ekRoots, inters); err != nil {
		return nil, "", fail("ek-certificate", err)
	}
	return cert.Raw, fmt.Sprintf("%s (from %s, issuer %q)", ekCertVerified, from, cert.Issuer), nil
}

// intermediates is the configured intermediate pool plus the certificates
// from the TPM's chain indices.
func (s *Server) intermediates(chain [][]byte) (*x509.CertPool, error) {
	if len(chain) == 0 {
		return s.ekIntermediates, nil
	}
	certs, err := pki.ParseEKChain(chain)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if s.ekIntermediates != nil {
		pool = s.ekIntermediates.Clone()
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
