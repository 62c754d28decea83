// Package basepeer moves base images between the sealroot servers that
// share a store, by digest.
//
// Each server keeps its own image store (package image). A server that
// needs a base it does not hold (a volatile root, a first root made from
// an image, `sealroot image pull`) fetches it from a running peer: the
// registry of running servers (store.ClusterStore) gives each peer's base
// address, where Server answers two requests over HTTPS:
//
//	GET /v1/images          the peer's image versions (JSON, at most MaxListBytes)
//	GET /v1/bases/{digest}  the base's bytes, with its length
//
// # Trust
//
// Both ends use TLS 1.3 and present their server certificates; each
// accepts only a certificate that the cluster's CA issued for a server
// (extended key usage serverAuth, as `sealroot pki init|issue` make
// them). Machines hold no such certificate, and agents present none, so
// no machine can fetch a base. Host names are not checked: a peer is
// reached at the address it registered, and what counts is that the CA
// made it a server. Nothing a peer sends is trusted further: a base is
// stored only when its bytes hash to the digest asked for
// (image.Store.Receive), and a version list is decoded with bounds
// (DecodeImages).
package basepeer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrNotServer means a peer's certificate is missing, or was not issued
// by the cluster's CA for a server.
var ErrNotServer = errors.New("peer certificate is not a server certificate of this cluster's CA")

// ServerTLS is the configuration of the base service: TLS 1.3 only,
// cert as this server's certificate, and a client certificate required
// that ca issued for a server. refused, if not nil, is called for each
// client refused.
func ServerTLS(cert tls.Certificate, ca *x509.CertPool, refused func()) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Verified below, also when missing (so that it is counted): the
		// standard check wants clientAuth, and server certificates carry
		// serverAuth.
		ClientAuth: tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := verifyServer(cs.PeerCertificates, ca)
			if err != nil && refused != nil {
				refused()
			}
			return err
		},
	}
}

// ClientTLS is the configuration a server fetches bases with: TLS 1.3
// only, cert as its client certificate, and a peer certificate that ca
// issued for a server, whatever names it carries.
func ClientTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The chain is verified by VerifyConnection, without the host
		// name (see the package comment).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs.PeerCertificates, ca)
		},
	}
}

// verifyServer checks that certs[0] chains to ca, with certs[1:] as
// intermediates, for serverAuth.
func verifyServer(certs []*x509.Certificate, ca *x509.CertPool) error {
	if len(certs) == 0 {
		return fmt.Errorf("no certificate: %w", ErrNotServer)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: ca, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("%w: %v", ErrNotServer, err)
	}
	return nil
}
