// Package server wires sealroot's daemon from one config.Config: the
// attestation service (QUIC), the admin API (Unix socket), the roots
// (package roots over the providers package storage opens) and the boot
// services (package boot). It holds construction and lifecycle only; the
// configuration lives in package config, the services in their packages.
//
// # Lifecycle
//
// New builds the services and restores their state; Listen binds the
// sockets and returns their addresses; Serve serves until its context
// ends; Close releases everything New and Listen acquired, in reverse
// order (one cleanup stack). Run is Listen then Serve.
//
// # State directory
//
//	pki/ca.crt pki/server.crt pki/*.key   sealroot CA and server certificate (sealroot pki init)
//	secrets.age.key                       age identity for secrets at rest
//	state.db                              bbolt store: machines, secrets
//	audit.log audit.log.N                 append-only decisions, JSON lines; rotated by size (config "audit")
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
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/auditapi"
	"github.com/sealroot/sealroot/server/basepeer"
	"github.com/sealroot/sealroot/server/boot"
	"github.com/sealroot/sealroot/server/bootreport"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/diskspace"
	"github.com/sealroot/sealroot/server/ekcert"
	"github.com/sealroot/sealroot/server/events"
	"github.com/sealroot/sealroot/server/history"
	"github.com/sealroot/sealroot/server/letgo"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/metrics"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/storage"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/server/users"
	"github.com/sealroot/sealroot/server/users/pam"
	"github.com/sealroot/sealroot/wire"
)

// serverName is the host name, which names this server in machines' boot
// history and the cluster unless store.server_name does.
func serverName() string {
	name, err := os.Hostname()
	if err != nil {
		return "sealroot"
	}
	return name
}

// EKDirs is the EK trust store `sealroot ek import` fills.
func EKDirs(stateDir string) ekcert.Dirs { return ekcert.Dirs{Base: filepath.Join(stateDir, "ek")} }

// SecureBootDir is where `sealroot secureboot init` keeps the owner key.
func SecureBootDir(stateDir string) string { return boot.SecureBootDir(stateDir) }

// PKIDir is where `sealroot pki init` keeps the CA and server certificate.
func PKIDir(stateDir string) string { return filepath.Join(stateDir, "pki") }

// Server is a daemon's parts.
type Server struct {
	cfg      config.Config
	logger   hclog.Logger
	store    serverStore
	machines *machines.Manager
	attest   *attest.Server
	tunnel   *tunnel.Tunnel // nil without config.Config.Tunnel
	storage  *storage.Storage
	roots    *roots.Service // the root registry over storage's providers
	letgo    *letgo.Watcher // frees user-root leases their machines let go of
	limits   config.Limits
	history  *history.Recorder
	reports  *bootreport.Receiver // nil without a tunnel
	events   *events.Bus          // decisions as the audit log records them
	metrics  *metrics.Metrics
	puller   *basepeer.Puller // fetches bases from peers; nil on a store of one server
	bases    *basepeer.Server // serves bases to peers; nil without images.peer_listen
	ready    atomic.Bool      // Serve brought every service up
	services services         // what Serve started, for `sealroot status`

	// Bound by Listen.
	attestConn net.PacketConn
	adminLn    net.Listener
	boot       *boot.Services // nil without config.Config.Boot
	metricsLn  net.Listener   // nil without config.Config.MetricsAddr
	reportLn   net.Listener   // agents' boot reports, on the tunnel; nil without one
	basesLn    net.Listener   // bases served to peers; nil without images.peer_listen

	closers []func() error // the cleanup stack; Close runs it backwards

	live   *boot.Live        // what Reload changes
	bootIP netip.Addr        // boot.server_ip, once the boot services run
	readyc chan struct{}     // closed once Serve serves (Ready)
	leaf   *x509.Certificate // the served certificate, for its dates
}

// Addrs are the addresses a Server listens on.
type Addrs struct {
	Attest net.Addr // UDP, the QUIC attestation service
	Admin  string   // the admin API's Unix socket
	// ISCSI is the plain iSCSI listener; nil without Config.ISCSI.Listen.
	ISCSI net.Addr
	// BootHTTP and BootTFTP are the boot services' listeners; nil
	// without Config.Boot (TFTP: or with it disabled).
	BootHTTP, BootTFTP net.Addr
	// Metrics is the metrics endpoint; nil without Config.MetricsAddr.
	Metrics net.Addr
	// Bases is where peers fetch bases; nil without images.peer_listen.
	Bases net.Addr
}

// onClose pushes fn on the cleanup stack.
func (s *Server) onClose(fn func() error) { s.closers = append(s.closers, fn) }

// New opens the state directory, builds the services and restores the
// roots that were served. ctx bounds the construction. Call Close when
// done, also after Serve.
func New(ctx context.Context, cfg config.Config, logger hclog.Logger) (_ *Server, err error) {
	cfg.Defaults()
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{cfg: cfg, logger: logger, events: new(events.Bus), live: new(boot.Live), readyc: make(chan struct{})}
	s.live.SetPredictor(boot.Predictor(cfg.Boot, cfg.StateDir))
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.limits, err = cfg.Limits.Parse(); err != nil {
		return nil, err
	}
	if err := cfg.CheckMetricsAddr(); err != nil {
		return nil, err
	}
	cert, err := pki.LoadServer(PKIDir(cfg.StateDir))
	if err != nil {
		return nil, fmt.Errorf("load server certificate (run `sealroot pki init` first): %w", err)
	}
	leaf, err := pki.ServerLeaf(cert)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	box, err := secrets.LoadOrCreate(filepath.Join(cfg.StateDir, "secrets.age.key"))
	if err != nil {
		return nil, fmt.Errorf("secrets identity: %w", err)
	}
	ekRoots, ekIntermediates, ekCerts, err := loadEKTrust(&cfg, logger)
	if err != nil {
		return nil, err
	}
	if s.store, err = openStore(ctx, &cfg, logger); err != nil {
		return nil, err
	}
	s.onClose(s.store.Close)
	auditLog, err := audit.OpenRotating(filepath.Join(cfg.StateDir, "audit.log"), cfg.Audit.Rotation())
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	s.onClose(auditLog.Close)
	if n := auditLog.Repaired(); n > 0 {
		logger.Warn("audit log ended in a torn line (a write cut short): cut it off", "bytes", n)
	}
	auditLog.OnRecord(s.events.Publish)
	s.history = history.New(s.store, cfg.ClusterName(serverName()), logger)
	s.metrics = newMetrics(&cfg, s.store, s)
	if cfg.Tunnel != nil {
		if s.tunnel, err = newTunnel(ctx, cfg.Tunnel, cfg.StateDir, s.store, logger); err != nil {
			return nil, err
		}
		s.onClose(func() error {
			err := s.tunnel.Close()
			logger.Info("tunnel down")
			return err
		})
		if cfg.RootTransport == attest.TransportPlain {
			logger.Warn("WARNING: root transport is plain: machines without a WireGuard key get their root over the unprotected LAN")
		}
	}
	letGoAfter := s.limits.LetGoAfter
	if letGoAfter == 0 {
		letGoAfter = letgo.DefaultGrace
	}
	s.letgo, err = letgo.New(letgo.Config{Targets: storageTargets{s}, Leases: s.store,
		LastHandshake: lastHandshake(s.tunnel), Grace: letGoAfter, Audit: auditLog, Logger: logger})
	if err != nil {
		return nil, err
	}
	if s.storage, err = storage.Open(ctx, &cfg, box, s.tunnel, letGoAfter, s.letgo.Ended, logger); err != nil {
		return nil, err
	}
	s.onClose(s.storage.Close)
	if s.storage.Portals != nil {
		s.storage.Portals.OnCommand(s.metrics.ObserveISCSICommand)
	}
	var puller interface {
		roots.Bases
		machines.Puller
	}
	if cs, ok := s.store.(store.ClusterStore); ok {
		if err := s.newBasePeers(cs, cert, logger); err != nil {
			return nil, err
		}
		puller = s.puller
	}
	rs := roots.New(roots.Config{Providers: s.storage.Providers(), Tunnel: peersOf(s.tunnel),
		BootGrace: s.limits.BootGrace, Bases: puller})
	s.roots = rs
	keys, err := openKeyring(ctx, s.store, box, logger)
	if err != nil {
		return nil, err
	}
	s.machines = machines.New(machines.Config{Store: s.store, Box: box, Keyring: keys, Audit: auditLog, Logger: logger,
		Withdraw: rs, Images: s.storage.Images, Volumes: s.storage.Volumes, Roots: rs, Puller: puller})
	lcfg := users.CheckerConfig{Users: s.store, Audit: auditLogins(auditLog)}
	if svc := cfg.Users.PAM(); svc != "" {
		v, err := pam.New(pam.Config{Service: svc})
		if err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
		lcfg.Verifier = v
		logger.Info("per-user root logins checked by PAM", "service", svc)
	}
	logins, err := users.NewChecker(lcfg)
	if err != nil {
		return nil, err
	}
	acfg := attest.Config{
		Certificate:       cert,
		Store:             s.store,
		Audit:             auditLog,
		Secrets:           s.machines,
		Files:             s.machines,
		EKRoots:           ekRoots,
		EKIntermediates:   ekIntermediates,
		EKCerts:           ekCerts,
		RequireEKCert:     cfg.RequireEKCert,
		RequireSecureBoot: cfg.RequireSecureBoot,
		Logger:            logger,
		RootTransport:     cfg.RootTransport,
		Predictor:         s.live,
		Withdraw:          rs,
		Limits:            s.limits.Attest,
		MaxSessions:       s.limits.MaxExchanges,
		History:           s.history,
		Observer:          s.metrics,
		Logins:            logins,
	}
	if s.tunnel != nil {
		acfg.Tunnels = s.tunnel
	}
	if !rs.Empty() {
		acfg.Roots = rs
	}
	if cs, ok := s.store.(store.ClusterStore); ok {
		if keys == nil {
			return nil, errors.New("cluster store without a secrets keyring")
		}
		acfg.Cluster = &attest.Cluster{Name: cfg.ClusterName(serverName()), Store: cs, Box: keys}
	}
	if s.attest, err = attest.New(acfg); err != nil {
		return nil, err
	}
	s.machines.SetAttestations(s.attest)
	rs.SetAttesting(s.attest)
	if s.tunnel != nil {
		s.reports, err = bootreport.New(bootreport.Config{Peers: s.tunnel, Store: s.store, Secrets: s.machines,
			Observe: s.metrics.ObserveBootReport, Logger: logger})
		if err != nil {
			return nil, err
		}
	}
	s.leaf = leaf
	s.checkCertificate(time.Now())
	return s, nil
}

// auditLogins records per-user root logins: the user and the outcome,
// never the password.
func auditLogins(l *audit.Log) func(users.Record) error {
	return func(r users.Record) error {
		reason := "user " + r.User
		if r.Reason != "" {
			reason += ": " + r.Reason
		}
		return l.Record(audit.Entry{Time: time.Now(), Actor: "server", MachineID: r.MachineID, Action: "login",
			Outcome: r.Outcome, Check: "login", Reason: reason})
	}
}

// peersOf is tn as roots.Peers, nil without a tunnel.
func peersOf(tn *tunnel.Tunnel) roots.Peers {
	if tn == nil {
		return nil
	}
	return tn
}

// Images is the image, volume and root service (for in-process callers
// and tests).
func (s *Server) Images() api.ImageService { return s.machines }

// Attest is the attestation service (for its noise and load counters).
func (s *Server) Attest() *attest.Server { return s.attest }

// Machines is the admin service (for in-process callers and tests).
func (s *Server) Machines() api.Service { return s.machines }

// Tunnel is the WireGuard root link, nil when not configured. Storage
// services listen on it and check peers with Tunnel.PeerAddr.
func (s *Server) Tunnel() *tunnel.Tunnel { return s.tunnel }

// Close runs the cleanup stack: it closes the listeners, withdraws the
// roots, stops the tunnel and closes the audit log and the database. A
// second Close does nothing.
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Listen binds the attestation socket, the admin socket and the boot
// services' listeners, and returns their addresses with the iSCSI
// listener's (bound by New). Address ports 0 are chosen here.
func (s *Server) Listen() (Addrs, error) {
	var err error
	if s.attestConn, err = net.ListenPacket("udp", s.cfg.AttestAddr); err != nil {
		return Addrs{}, fmt.Errorf("attestation listener: %w", err)
	}
	s.onClose(s.attestConn.Close)
	if s.adminLn, err = api.Listen(s.cfg.AdminSocket); err != nil {
		return Addrs{}, fmt.Errorf("admin socket: %w", err)
	}
	s.onClose(func() error {
		s.adminLn.Close()
		os.Remove(s.cfg.AdminSocket)
		return nil
	})
	a := Addrs{Attest: s.attestConn.LocalAddr(), Admin: s.cfg.AdminSocket}
	if s.cfg.MetricsAddr != "" {
		if s.metricsLn, err = net.Listen("tcp", s.cfg.MetricsAddr); err != nil {
			return Addrs{}, fmt.Errorf("metrics listener: %w", err)
		}
		s.onClose(func() error {
			// The metrics server closes it when Serve stops: no error.
			if err := s.metricsLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		})
		a.Metrics = s.metricsLn.Addr()
	}
	if s.storage.Portals != nil {
		a.ISCSI = s.storage.Portals.PlainAddr()
	}
	if s.bases != nil {
		if s.basesLn, err = net.Listen("tcp", s.cfg.Images.PeerListen); err != nil {
			return Addrs{}, fmt.Errorf("base peer listener: %w", err)
		}
		s.onClose(func() error { s.basesLn.Close(); return nil })
		a.Bases = s.basesLn.Addr()
	}
	if s.reports != nil {
		if s.reportLn, err = s.tunnel.Listen("tcp", wire.ReportPort); err != nil {
			return Addrs{}, fmt.Errorf("boot report listener: %w", err)
		}
		s.onClose(func() error { s.reportLn.Close(); return nil })
	}
	if s.cfg.Boot != nil {
		if s.boot, err = boot.Listen(*s.cfg.Boot, s.cfg.StateDir, s.logger); err != nil {
			return Addrs{}, err
		}
		s.onClose(s.boot.Close)
		a.BootHTTP, a.BootTFTP = s.boot.HTTPAddr(), s.boot.TFTPAddr()
	}
	return a, nil
}

// Run listens and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve serves on the sockets Listen bound until ctx ends, then shuts
// every service down and waits for it.
func (s *Server) Serve(ctx context.Context) error {
	if s.attestConn == nil {
		return errors.New("server: Serve before Listen")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	s.services.add("attest", s.attestConn.LocalAddr().String(), "QUIC")
	s.services.add("admin api", s.cfg.AdminSocket, "unix socket")
	s.services.addConfigured(&s.cfg)
	run("attestation service", func() error { return s.attest.Serve(ctx, s.attestConn) })
	run("certificate check", func() error { return s.watchCertificate(ctx) })
	if w, ok := s.store.(store.MachineWatcher); ok {
		run("machine change feed", func() error { return s.attest.FollowStore(ctx, w) })
	}
	if s.basesLn != nil {
		s.services.add("base peers", s.basesLn.Addr().String(), "bases to the other servers, TLS with server certificates")
		run("base service", func() error { return s.bases.Serve(ctx, s.basesLn) })
	}
	if cs, ok := s.store.(store.ClusterStore); ok {
		info := s.clusterInfo()
		run("cluster registration", func() error { return cs.RegisterServer(ctx, info) })
		run("home server", func() error { return s.attest.ServeHome(ctx) })
	}
	adminSrv := &api.Server{
		Handler: api.NewHandler(s.machines, s.logger.Named("api"),
			api.WithActorFunc(machines.WithActor),
			api.WithImages(s.machines),
			api.WithFiles(s.machines),
			api.WithMenus(s.machines),
			api.WithDHCP(s.machines),
			api.WithCluster(s.machines),
			api.WithBackup(s.backup),
			api.WithCapture(s.machines),
			api.WithPull(s.machines),
			api.WithUsers(s.machines),
			api.WithUserRoots(s.machines),
			api.WithRootLinks(&api.Links{Machines: s.machines, Tunnel: s.tunnel, Transport: s.cfg.RootTransport}),
			api.WithStatus(statusService{s}),
			api.WithObserve(observeService{s}),
			api.WithAudit(&auditapi.Service{Path: filepath.Join(s.cfg.StateDir, "audit.log"), Bus: s.events, Machines: s.machines})),
		Logger: s.logger.Named("api"),
	}
	run("admin API", func() error { return adminSrv.Serve(ctx, s.adminLn) })
	run("boot history", func() error { return s.history.Run(ctx) })
	run("user root let-go", func() error {
		// Machines that were off while the server was down report no
		// session end: look at every restored user root.
		for _, e := range s.storage.ServedUserRoots() {
			s.letgo.Ended(e)
		}
		return s.letgo.Run(ctx)
	})
	run("event streams", func() error {
		<-ctx.Done()
		s.events.Close() // ends `sealroot events --follow` streams, so the API can shut down
		return nil
	})
	if s.metricsLn != nil {
		s.services.add("metrics", s.metricsLn.Addr().String(), "/metrics /healthz /readyz")
		run("metrics", func() error { return s.metrics.Serve(ctx, s.metricsLn) })
	}
	if s.storage.Portals != nil {
		s.storage.Portals.Serve(ctx, run)
	}
	if s.reportLn != nil {
		s.services.add("boot reports", s.reportLn.Addr().String(), "agents' timings and logs, tunnel only")
		run("boot reports", func() error { return s.reports.Serve(ctx, s.reportLn) })
	}
	if s.cfg.LowSpaceWarnBytes > 0 {
		w := &diskspace.Watch{Dir: s.cfg.StateDir, Low: uint64(s.cfg.LowSpaceWarnBytes), Logger: s.logger}
		run("free space watch", func() error { return w.Run(ctx) })
	}
	if s.boot != nil {
		s.bootIP = s.boot.IP()
		s.live.Set(s.boot.Config(), s.boot.Scripts(), s.cfg.StateDir, s.logger)
		if err := s.boot.Serve(ctx, s.live, s.limits, boot.StoreLeases{DB: s.store}, run); err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	s.ready.Store(true)
	defer s.ready.Store(false)
	s.logger.Info("sealroot serving", "attest", s.attestConn.LocalAddr().String(), "admin", s.cfg.AdminSocket, "metrics", s.cfg.MetricsAddr)
	close(s.readyc)
	<-ctx.Done()
	s.logger.Info("sealroot stopping: draining services")
	wg.Wait()
	close(errc)
	return <-errc
}

// loadEKTrust loads the manufacturer roots (the configured bundle and the
// imported ones), the imported intermediates, and the EK certificate
// source over <StateDir>/ek/certs.
func loadEKTrust(cfg *config.Config, logger hclog.Logger) (roots, intermediates *x509.CertPool, src *ekcert.Source, err error) {
	dirs := EKDirs(cfg.StateDir)
	if roots, intermediates, err = dirs.LoadTrust(cfg.EKCABundle); err != nil {
		return nil, nil, nil, err
	}
	src, err = ekcert.New(ekcert.Config{
		Dir:      dirs.Certs(),
		IntelURL: cfg.EKCertIntelURL,
		AMDURL:   cfg.EKCertAMDURL,
		Logger:   logger.Named("ekcert"),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return roots, intermediates, src, nil
}

// Ready is closed once Run has every listener up and serves.
func (s *Server) Ready() <-chan struct{} { return s.readyc }
