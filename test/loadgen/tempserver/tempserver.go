// Package tempserver runs a throwaway sealroot daemon for benchmarks and
// load tests: package server wires it exactly as `sealroot serve` does,
// in a temporary state directory, with the attestation service on a free
// UDP port of 127.0.0.1 and the admin API on a socket in that directory.
package tempserver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/test/loadgen"
)

// ServerName is the name agents verify in the server certificate.
const ServerName = "localhost"

// startTimeout bounds how long Start waits for the daemon to answer.
const startTimeout = 10 * time.Second

// Server is a running daemon. Close stops it and deletes its state.
type Server struct {
	Target loadgen.Target // the attestation service, with its CA
	CAFile string         // the CA certificate (PEM) agents pin
	Socket string         // the admin API socket

	dir    string
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// LoadLimits lift the per-source limits for load generators, whose
// simulated machines all come from 127.0.0.1 (on a LAN each has its own
// address).
var LoadLimits = config.LimitsConfig{
	ConnsPerSource:     2 * loadgen.MaxConcurrency,
	ExchangesPerSource: 2 * loadgen.MaxConcurrency,
	MaxExchanges:       2 * loadgen.MaxConcurrency,
	RetryAbove:         4 * loadgen.MaxConcurrency,
	LoadAbove:          4 * loadgen.MaxConcurrency,
}

// Start is StartWith the LoadLimits.
func Start(ctx context.Context, logger hclog.Logger) (*Server, error) {
	l := LoadLimits
	return StartWith(ctx, logger, &l)
}

// StartWith creates the state directory (CA and server certificate, as
// `sealroot pki init` does), starts the daemon with limits (nil: the
// daemon's defaults) and waits until its admin API answers. The daemon
// stops when ctx ends or at Close. logger may be nil.
func StartWith(ctx context.Context, logger hclog.Logger, limits *config.LimitsConfig) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "sealroot-tempserver-")
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	roots, err := initPKI(server.PKIDir(dir))
	if err != nil {
		return nil, err
	}
	cfg := config.Config{StateDir: dir, AttestAddr: "127.0.0.1:0", AdminSocket: filepath.Join(dir, "admin.sock"), Limits: limits}
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	addrs, err := srv.Listen()
	if err != nil {
		srv.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	s := &Server{
		Target: loadgen.Target{Addr: addrs.Attest.String(), ServerName: ServerName, Roots: roots},
		CAFile: filepath.Join(server.PKIDir(dir), pki.CACertFile),
		Socket: cfg.AdminSocket,
		dir:    dir,
		srv:    srv,
		cancel: cancel,
		done:   make(chan error, 1),
	}
	go func() { s.done <- srv.Serve(runCtx) }()
	if err := s.waitReady(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Attest is the daemon's attestation service (its noise and load counters).
func (s *Server) Attest() *attest.Server { return s.srv.Attest() }

// AuditPath is the daemon's audit log.
func (s *Server) AuditPath() string { return filepath.Join(s.dir, "audit.log") }

// Admin returns a client of the daemon's admin API.
func (s *Server) Admin() api.Service { return client.New(s.Socket) }

// Close stops the daemon, waits for it and deletes its state directory.
// It returns the daemon's error, if it failed. Call it once.
func (s *Server) Close() error {
	s.cancel()
	runErr := <-s.done
	return errors.Join(runErr, s.srv.Close(), os.RemoveAll(s.dir))
}

// waitReady polls the admin API until it answers. The attestation socket
// is bound before the admin socket listens, so it is ready too.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	admin := s.Admin()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := admin.Machines(ctx)
		if err == nil {
			return nil
		}
		select {
		case runErr := <-s.done:
			s.done <- runErr
			return fmt.Errorf("sealroot daemon: %w", runErr)
		case <-ctx.Done():
			return fmt.Errorf("sealroot daemon did not answer on %s: %w", s.Socket, err)
		case <-tick.C:
		}
	}
}

// initPKI creates the CA and server certificate in dir and returns the CA
// as a pool to pin.
func initPKI(dir string) (*x509.CertPool, error) {
	if err := pki.Init(dir, pki.InitOptions{}); err != nil {
		return nil, err
	}
	ca, err := pki.LoadCA(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return roots, nil
}
