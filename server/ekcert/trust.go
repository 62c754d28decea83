package ekcert

import (
	"crypto/x509"
	"fmt"

	"github.com/sealroot/sealroot/pki"
)

// LoadTrust returns the manufacturer roots an EK certificate may chain to
// (the imported ones and those in bundle, PEM files or directories) and
// the imported intermediates; roots is nil when there are none.
func (d Dirs) LoadTrust(bundle []string) (roots, intermediates *x509.CertPool, err error) {
	roots, intermediates, err = d.LoadCAs()
	if err != nil {
		return nil, nil, err
	}
	if len(bundle) == 0 {
		return roots, intermediates, nil
	}
	certs, err := pki.ReadCertificates(bundle...)
	if err != nil {
		return nil, nil, fmt.Errorf("EK CA bundle: %w", err)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("EK CA bundle %q: no certificates", bundle)
	}
	if roots == nil {
		roots = x509.NewCertPool()
	}
	for _, c := range certs {
		roots.AddCert(c)
	}
	return roots, intermediates, nil
}
