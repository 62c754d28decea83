package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// ErrEtcdTLS means the TLS handshake with an etcd member failed: the
// member refused this server's client certificate (none given, or not
// signed by a CA the member trusts for clients), or the member's
// certificate does not verify against store.ca_file.
var ErrEtcdTLS = errors.New("etcd TLS handshake refused")

// tlsProbeTimeout bounds the probe of one endpoint.
const tlsProbeTimeout = 3 * time.Second

// http2Preface is what an HTTP/2 (gRPC) client sends first; the member
// answers with its settings, or refuses the client's certificate.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// checkEtcdTLS shakes hands with the https endpoints, one after the other,
// with tc, until one accepts. The gRPC client would retry a refused
// handshake until the request's deadline and report only the timeout;
// this names the cause. It fails with ErrEtcdTLS when every member that
// answered refused and none accepted; members that cannot be reached are
// left to the client (it reports them as unavailable).
func checkEtcdTLS(ctx context.Context, endpoints []string, tc *tls.Config) error {
	var refused error
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			continue
		}
		switch err := probeTLS(ctx, u.Host, tc); {
		case err == nil:
			return nil
		case errors.Is(err, ErrEtcdTLS):
			if refused == nil {
				refused = err
			}
		}
	}
	return refused
}

// probeTLS shakes hands with the member at host and reads its first
// answer. It returns an error wrapping ErrEtcdTLS when TLS failed, another
// error when the member could not be reached or did not answer.
func probeTLS(ctx context.Context, host string, tc *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	cfg := tc.Clone()
	cfg.NextProtos = []string{"h2"}
	if cfg.ServerName == "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			cfg.ServerName = h
		}
	}
	// The client certificate goes out even when the member does not list
	// its CA as acceptable (the gRPC client would send none), so that the
	// refusal can say why.
	p := probe{host: host}
	if len(cfg.Certificates) > 0 {
		cert := cfg.Certificates[0]
		p.hasCert = true
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			p.unaccepted = cri.SupportsCertificate(&cert)
			return &cert, nil
		}
	}
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return p.error(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// TLS 1.3: the member judges the client certificate after the
	// handshake; its refusal is the answer to the first read.
	if _, err := conn.Write([]byte(http2Preface)); err != nil {
		return p.error(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return p.error(err)
	}
	return nil
}

// probe is what one probe learnt of its handshake.
type probe struct {
	host    string
	hasCert bool
	// unaccepted says why the member's request for a client certificate
	// does not accept store.cert_file (its CA is not among the member's
	// acceptable ones); nil when it does or was not asked.
	unaccepted error
}

// error says what a failed handshake with the member means for the
// store's configuration.
func (p *probe) error(err error) error {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var op *net.OpError
	refused := errors.As(err, &op) && op.Op == "remote error"
	switch {
	case errors.As(err, &verify), errors.As(err, &unknown):
		return fmt.Errorf("etcd member %s: %w: its certificate does not verify against store.ca_file: %w", p.host, ErrEtcdTLS, err)
	case refused && !p.hasCert:
		return fmt.Errorf("etcd member %s: %w: it requires a TLS client certificate (store.cert_file, store.key_file): %w", p.host, ErrEtcdTLS, err)
	case refused && p.unaccepted != nil:
		return fmt.Errorf("etcd member %s: %w: store.cert_file is not signed by a CA the member trusts for clients (%v): %w", p.host, ErrEtcdTLS, p.unaccepted, err)
	case refused:
		return fmt.Errorf("etcd member %s: %w: it refused the client certificate store.cert_file: %w", p.host, ErrEtcdTLS, err)
	}
	return fmt.Errorf("etcd member %s: %w", p.host, err)
}
