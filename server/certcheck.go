package server

import (
	"context"
	"time"

	"github.com/sealroot/sealroot/pki"
)

// certCheckInterval is how often a running server rechecks its
// certificate's dates.
const certCheckInterval = 24 * time.Hour

// checkCertificate logs, loudly, a server certificate that agents refuse
// (expired or not yet valid) and warns within pki.RenewBefore of expiry.
// It reports whether the certificate is usable.
func (s *Server) checkCertificate(now time.Time) bool {
	v, msg := pki.CheckValidity(s.leaf, now)
	switch v {
	case pki.Expired, pki.NotYetValid:
		s.logger.Error("!!! SERVER CERTIFICATE UNUSABLE !!! " + msg)
		return false
	case pki.ExpiresSoon:
		s.logger.Warn(msg, "not_after", s.leaf.NotAfter.UTC())
	}
	return true
}

// watchCertificate rechecks the certificate daily until ctx ends.
func (s *Server) watchCertificate(ctx context.Context) error {
	t := time.NewTicker(certCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			s.checkCertificate(now)
		}
	}
}
