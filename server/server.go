// Package server wires sealroot's daemon from one Config: the attestation
// service (QUIC), the admin API (Unix socket), and the boot services
// (ProxyDHCP/DHCP, TFTP, HTTP). Run blocks until its context ends.
//
// # State directory
//
//	pki/ca.crt pki/server.crt pki/*.key   sealroot CA and server certificate (sealroot pki init)
//	secrets.age.key                       age identity for secrets at rest
//	state.db                              bbolt store: machines, secrets
//	audit.log                             append-only decisions, JSON lines
//	images/                               base images (package image; config "images")
//	volumes/                              machines' volumes (package volume; config "volumes")
//	iscsi/                                iSCSI targets' records, encrypted (package rootiscsi)
//	nfs/ganesha/ nfs/roots/<id>/          nfs-ganesha's configuration; machines' NFS roots (package rootnfs)
package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/events"
	"github.com/sealroot/sealroot/server/history"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/metrics"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/tunnel"
)

// Config is the daemon's configuration, read from a JSON file and flags.
type Config struct {
	// StateDir holds keys, the database and the audit log.
	StateDir string `json:"state_dir"`
	// AttestAddr is the UDP address of the QUIC attestation service.
	AttestAddr string `json:"attest_addr"`
	// AdminSocket is the admin API's Unix socket (root only).
	AdminSocket string `json:"admin_socket"`
	// EKCABundle lists PEM files or directories of TPM vendor CAs. Empty:
	// EK certificates are not checked; approval of the EK fingerprint is
	// the only identity check.
	EKCABundle []string `json:"ek_ca_bundle,omitempty"`
	// RequireEKCert refuses TPMs without an EK certificate.
	RequireEKCert bool `json:"require_ek_cert,omitempty"`
	// Boot configures the network boot services; nil disables them.
	Boot *BootConfig `json:"boot,omitempty"`
	// Tunnel configures the per-machine WireGuard root link; nil: none.
	Tunnel *TunnelConfig `json:"tunnel,omitempty"`
	// RootTransport is "wireguard" (default; agents must send a WireGuard
	// key) or "plain" (trusted labs: roots over the plain LAN). It
	// matters only with Tunnel.
	RootTransport string `json:"root_transport,omitempty"`
	// Images and Volumes place the image store and the machines'
	// volumes; nil: under StateDir.
	Images  *ImagesConfig  `json:"images,omitempty"`
	Volumes *VolumesConfig `json:"volumes,omitempty"`
	// ISCSI serves machines their iSCSI roots; nil: no iSCSI.
	ISCSI *ISCSIConfig `json:"iscsi,omitempty"`
	// NFS serves machines their NFSv4 and volatile roots; nil: none.
	NFS *NFSConfig `json:"nfs,omitempty"`
	// LowSpaceWarnBytes: the server warns in its log while the state
	// directory's filesystem has less free space than this (the audit log
	// fails closed on a full disk: nothing is released). Default 256 MiB
	// (DefaultLowSpace); negative: no warning.
	LowSpaceWarnBytes int64 `json:"low_space_warn_bytes,omitempty"`
	// MetricsAddr is the TCP address of the Prometheus metrics and
	// health endpoints (/metrics, /healthz, /readyz), e.g.
	// "127.0.0.1:9477"; empty: not served. Never the admin socket, never
	// on the tunnel: with Tunnel set it must name an IP address outside
	// the tunnel prefix.
	MetricsAddr string `json:"metrics_addr,omitempty"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/sealroot"
	}
	if c.AttestAddr == "" {
		c.AttestAddr = ":4433"
	}
	if c.AdminSocket == "" {
		c.AdminSocket = "/run/sealroot/admin.sock"
	}
	if c.LowSpaceWarnBytes == 0 {
		c.LowSpaceWarnBytes = DefaultLowSpace
	}
}

// serverName names this server in machines' boot history.
func serverName() string {
	name, err := os.Hostname()
	if err != nil {
		return "sealroot"
	}
	return name
}

// PKIDir is where `sealroot pki init` keeps the CA and server certificate.
func PKIDir(stateDir string) string { return filepath.Join(stateDir, "pki") }

// Server is a running daemon's parts.
type Server struct {
	cfg      Config
	logger   hclog.Logger
	store    *store.DB
	audit    *audit.Log
	machines *machines.Manager
	attest   *attest.Server
	history  *history.Recorder
	events   *events.Bus    // decisions as the audit log records them
	tunnel   *tunnel.Tunnel // nil without Config.Tunnel
	storage  *storage
	metrics  *metrics.Metrics
	ready    atomic.Bool // Run brought every service up
	// metricsAddr is the metrics listener's address once Run listens.
	metricsAddr atomic.Value
	services    services // what Run started
}

// MetricsAddr returns the address the metrics endpoint listens on, or ""
// before Run listens or without Config.MetricsAddr.
func (s *Server) MetricsAddr() string {
	a, _ := s.metricsAddr.Load().(string)
	return a
}

// New opens the state directory and builds the services.
func New(cfg Config, logger hclog.Logger) (*Server, error) {
	cfg.Defaults()
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := checkMetricsAddr(&cfg); err != nil {
		return nil, err
	}
	cert, err := pki.LoadServer(PKIDir(cfg.StateDir))
	if err != nil {
		return nil, fmt.Errorf("load server certificate (run `sealroot pki init` first): %w", err)
	}
	box, err := secrets.LoadOrCreate(filepath.Join(cfg.StateDir, "secrets.age.key"))
	if err != nil {
		return nil, fmt.Errorf("secrets identity: %w", err)
	}
	var ekRoots *x509.CertPool
	if len(cfg.EKCABundle) > 0 {
		if ekRoots, err = pki.LoadBundle(cfg.EKCABundle...); err != nil {
			return nil, fmt.Errorf("EK CA bundle: %w", err)
		}
	}
	db, err := store.Open(filepath.Join(cfg.StateDir, "state.db"), logger)
	if err != nil {
		return nil, err
	}
	auditLog, err := audit.Open(filepath.Join(cfg.StateDir, "audit.log"))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if n := auditLog.Repaired(); n > 0 {
		logger.Warn("audit log ended in a torn line (a write cut short): cut it off", "bytes", n)
	}
	bus := new(events.Bus)
	auditLog.OnRecord(bus.Publish)
	mgr := machines.New(db, box, auditLog, logger)
	hist := history.New(db, serverName(), logger)
	srv := &Server{history: hist, events: bus}
	srv.metrics = newMetrics(&cfg, db, srv)
	acfg := attest.Config{
		Certificate:   cert,
		Store:         db,
		Audit:         auditLog,
		Secrets:       mgr,
		EKRoots:       ekRoots,
		RequireEKCert: cfg.RequireEKCert,
		Logger:        logger,
		RootTransport: cfg.RootTransport,
		Predictor:     bootPredictor(cfg.Boot, cfg.StateDir),
		Observer:      attest.Observers{hist, srv.metrics},
	}
	var tn *tunnel.Tunnel
	if cfg.Tunnel != nil {
		if tn, err = newTunnel(context.Background(), cfg.Tunnel, cfg.StateDir, db, logger); err != nil {
			auditLog.Close()
			db.Close()
			return nil, err
		}
		acfg.Tunnels = tn
		if cfg.RootTransport == attest.TransportPlain {
			logger.Warn("WARNING: root transport is plain: machines without a WireGuard key get their root over the unprotected LAN")
		}
	}
	st, err := newStorage(context.Background(), &cfg, db, auditLog, mgr, box, tn, logger)
	var as *attest.Server
	if err == nil {
		if st.roots != nil || st.nfsRoots != nil {
			acfg.Roots = st
		}
		as, err = attest.New(acfg)
	}
	if err != nil {
		if st != nil {
			st.close()
		}
		if tn != nil {
			tn.Close()
		}
		auditLog.Close()
		db.Close()
		return nil, err
	}
	mgr.SetAttestations(as)
	mgr.SetOnRemove(func(ctx context.Context, id string) {
		if tn != nil {
			tn.Remove(id)
		}
		if err := st.releaseRoot(ctx, id); err != nil {
			logger.Error("release root", "machine", id, "error", err)
		}
	})
	srv.cfg, srv.logger, srv.store, srv.audit, srv.machines, srv.attest, srv.tunnel, srv.storage = cfg, logger, db, auditLog, mgr, as, tn, st
	return srv, nil
}

// Images is the image, volume and root service (for in-process callers
// and tests).
func (s *Server) Images() api.ImageService { return s.storage }

// Machines is the admin service (for in-process callers and tests).
func (s *Server) Machines() api.Service { return s.machines }

// Tunnel is the WireGuard root link, nil when not configured. Storage
// services listen on it and check peers with Tunnel.PeerAddr.
func (s *Server) Tunnel() *tunnel.Tunnel { return s.tunnel }

// Close releases the tunnel, the database and the audit log.
func (s *Server) Close() error {
	err := s.storage.close()
	if s.tunnel != nil {
		err = errors.Join(err, s.tunnel.Close())
	}
	return errors.Join(err, s.audit.Close(), s.store.Close())
}

// Run serves until ctx ends, then shuts every service down and waits.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pc, err := net.ListenPacket("udp", s.cfg.AttestAddr)
	if err != nil {
		return fmt.Errorf("attestation listener: %w", err)
	}
	defer pc.Close()
	adminLn, err := api.Listen(s.cfg.AdminSocket)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer os.Remove(s.cfg.AdminSocket)

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	run := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	s.services.begin()
	s.services.add("attest", pc.LocalAddr().String(), "QUIC")
	s.services.add("admin api", s.cfg.AdminSocket, "unix socket")
	s.services.addConfigured(&s.cfg)
	run("attestation service", func() error { return s.attest.Serve(ctx, pc) })
	adminSrv := &api.Server{
		Handler: api.NewHandler(s.machines, s.logger.Named("api"),
			api.WithActorFunc(withActor),
			api.WithImages(s.storage),
			api.WithRootLinks(&api.Links{Machines: s.machines, Tunnel: s.tunnel, Transport: s.cfg.RootTransport}),
			api.WithStatus(statusService{s}),
			api.WithAudit(&auditService{path: filepath.Join(s.cfg.StateDir, "audit.log"), bus: s.events, machines: s.machines})),
		Logger: s.logger.Named("api"),
	}
	run("admin API", func() error { return adminSrv.Serve(ctx, adminLn) })
	run("event streams", func() error {
		<-ctx.Done()
		s.events.Close() // ends `sealroot events --follow` streams, so the API can shut down
		return nil
	})
	s.storage.serve(ctx, run)
	if s.cfg.LowSpaceWarnBytes > 0 {
		w := &spaceWatch{dir: s.cfg.StateDir, low: uint64(s.cfg.LowSpaceWarnBytes), logger: s.logger}
		run("free space watch", func() error { return w.watch(ctx) })
	}
	if s.cfg.Boot != nil {
		if err := s.startBoot(ctx, run); err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	if s.cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("metrics listener: %w", err)
		}
		s.metricsAddr.Store(ln.Addr().String())
		s.services.add("metrics", ln.Addr().String(), "/metrics /healthz /readyz")
		run("metrics", func() error { return s.metrics.Serve(ctx, ln) })
	}
	s.ready.Store(true)
	defer s.ready.Store(false)
	s.logger.Info("sealroot serving", "attest", pc.LocalAddr().String(), "admin", s.cfg.AdminSocket, "metrics", s.cfg.MetricsAddr)
	<-ctx.Done()
	wg.Wait()
	close(errc)
	return <-errc
}
