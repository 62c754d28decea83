package attest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/quic-go/quic-go"

	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// Config configures a Server. Store, Audit, Secrets and Certificate are
// required; every other field has a working zero value.
type Config struct {
	Certificate tls.Certificate // the server certificate, issued by the sealroot CA
	Store       store.Store
	Audit       *audit.Log
	Secrets     Secrets

	// EKRoots and EKIntermediates verify EK certificates (TPM vendor CAs).
	// Nil: EK certificates are not checked and identity rests on operator
	// approval of the EK fingerprint.
	EKRoots, EKIntermediates *x509.CertPool
	// RequireEKCert refuses TPMs without an EK certificate.
	RequireEKCert bool

	PCRs        []int         // quoted PCR selection; default DefaultPCRs
	StepTimeout time.Duration // per message; default 30s
	RetryAfter  time.Duration // suggested delay for pending agents; default 3s
	MaxSessions int           // concurrent attestations; default 256
	Rand        io.Reader     // default crypto/rand
	Logger      hclog.Logger  // default discards
	Now         func() time.Time

	// Tunnels, when set, gives every released machine a WireGuard peer
	// and puts its plan in the credential. Nil: no tunnel.
	Tunnels Tunnels
	// RootTransport is TransportWireGuard (default) or TransportPlain; it
	// matters only with Tunnels. A machine's RootPlan parameter
	// TransportParam overrides it.
	RootTransport string
	// Roots, when set, prepares each released machine's root storage
	// and its per-boot secrets. Nil: the stored root plan goes as is.
	Roots Roots
	// Withdraw, when set, takes a machine's tunnel peer and root away
	// when its boot state changes. Nil: nothing to withdraw.
	Withdraw roots.Withdrawer
	// Predictor gives the measurements machines with policy "predicted"
	// are checked against. Nil: such machines are refused.
	Predictor Predictor
	// Files gives released machines their configuration files. Nil:
	// none.
	Files Files
}

// Server is the attestation service. It is safe for concurrent use; Serve
// may be called once per listening socket.
type Server struct {
	store           store.Store
	audit           *audit.Log
	secrets         Secrets
	ekRoots         *x509.CertPool
	ekIntermediates *x509.CertPool
	requireEKCert   bool
	pcrs            []int
	stepTimeout     time.Duration
	retryAfter      time.Duration
	rand            io.Reader
	logger          hclog.Logger
	now             func() time.Time
	tlsConfig       *tls.Config
	sessions        chan struct{} // semaphore of MaxSessions
	tunnels         Tunnels
	transport       string
	roots           Roots
	withdrawer      roots.Withdrawer
	predictor       Predictor
	live            live // exchanges in progress, by machine
	files           Files
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Audit == nil || cfg.Secrets == nil {
		return nil, errors.New("attest: Store, Audit and Secrets are required")
	}
	if len(cfg.Certificate.Certificate) == 0 {
		return nil, errors.New("attest: a server certificate is required")
	}
	s := &Server{
		store:           cfg.Store,
		audit:           cfg.Audit,
		secrets:         cfg.Secrets,
		ekRoots:         cfg.EKRoots,
		ekIntermediates: cfg.EKIntermediates,
		requireEKCert:   cfg.RequireEKCert,
		pcrs:            cfg.PCRs,
		stepTimeout:     orDefault(cfg.StepTimeout, 30*time.Second),
		retryAfter:      orDefault(cfg.RetryAfter, 3*time.Second),
		rand:            orDefault[io.Reader](cfg.Rand, rand.Reader),
		logger:          orDefault(cfg.Logger, hclog.NewNullLogger()).Named("attest"),
		now:             cfg.Now,
		sessions:        make(chan struct{}, orDefault(cfg.MaxSessions, 256)),
		tunnels:         cfg.Tunnels,
		transport:       orDefault(cfg.RootTransport, TransportWireGuard),
		predictor:       cfg.Predictor,
		roots:           cfg.Roots,
		withdrawer:      cfg.Withdraw,
		files:           cfg.Files,
	}
	if s.transport != TransportWireGuard && s.transport != TransportPlain {
		return nil, fmt.Errorf("attest: root transport %q: want %q or %q", s.transport, TransportWireGuard, TransportPlain)
	}
	if len(s.pcrs) == 0 {
		s.pcrs = DefaultPCRs
	}
	// Every credential is sealed to PCR 15 = 0 and every quote must show
	// it zero (eventlog.Verify), so PCR 15 is always in the selection.
	if !slices.Contains(s.pcrs, wire.ReleasePCR) {
		s.pcrs = append(slices.Clone(s.pcrs), wire.ReleasePCR)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.tlsConfig = &tls.Config{
		Certificates: []tls.Certificate{cfg.Certificate},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{wire.ALPN},
	}
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// QUICConfig is the transport configuration both ends use.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  10 * time.Second,
		MaxIdleTimeout:        60 * time.Second,
		MaxIncomingStreams:    1,
		MaxIncomingUniStreams: -1,
	}
}

// Serve accepts attestation connections on conn until ctx ends, then waits
// for running sessions to finish.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	ln, err := quic.Listen(conn, s.tlsConfig, QUICConfig())
	if err != nil {
		return fmt.Errorf("quic listen: %w", err)
	}
	defer ln.Close()
	s.logger.Info("attestation service listening", "addr", conn.LocalAddr().String())
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("quic accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// serveConn runs one attestation on one connection.
func (s *Server) serveConn(ctx context.Context, c *quic.Conn) {
	remote := c.RemoteAddr().String()
	select {
	case s.sessions <- struct{}{}:
		defer func() { <-s.sessions }()
	case <-ctx.Done():
		c.CloseWithError(errCodeShutdown, "server shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 4*s.stepTimeout)
	defer cancel()
	stream, err := c.AcceptStream(ctx)
	if err != nil {
		s.logger.Debug("no stream", "remote", remote, "error", err)
		c.CloseWithError(errCodeProtocol, "no stream")
		return
	}
	tlsState := c.ConnectionState().TLS
	exporter, err := tlsState.ExportKeyingMaterial(wire.ExporterLabel, nil, wire.ExporterLength)
	if err != nil {
		c.CloseWithError(errCodeInternal, "exporter")
		return
	}
	err = s.handle(ctx, stream, remote, exporter)
	stream.Close()
	if err != nil {
		s.logger.Debug("attestation ended with error", "remote", remote, "error", err)
	}
	// Let the agent read the final frame before the connection goes.
	select {
	case <-c.Context().Done():
	case <-time.After(s.stepTimeout):
		c.CloseWithError(errCodeOK, "done")
	case <-ctx.Done():
		c.CloseWithError(errCodeOK, "done")
	}
}

// Application error codes on connection close.
const (
	errCodeOK       quic.ApplicationErrorCode = 0
	errCodeProtocol quic.ApplicationErrorCode = 1
	errCodeInternal quic.ApplicationErrorCode = 2
	errCodeShutdown quic.ApplicationErrorCode = 3
)

// stream is what handle needs of a QUIC stream.
type stream interface {
	io.ReadWriter
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
}

// handle runs the conversation of package wire on one stream.
func (s *Server) handle(ctx context.Context, st stream, remote string, exporter []byte) error {
	x := s.newExchange(remote, exporter)
	ctx, done := x.endable(ctx, st)
	defer done()
	_, err := s.step(ctx, st, x, func(m wire.Message) (wire.Message, error) {
		h, ok := m.(*wire.Hello)
		if !ok {
			return nil, fail("protocol", fmt.Errorf("expected hello, got %v", m.Type()))
		}
		return x.start(ctx, h)
	})
	if err != nil || x.done {
		return err
	}
	reply, err := s.step(ctx, st, x, func(m wire.Message) (wire.Message, error) {
		ev, ok := m.(*wire.Evidence)
		if !ok {
			return nil, fail("protocol", fmt.Errorf("expected evidence, got %v", m.Type()))
		}
		return x.finish(ctx, ev)
	})
	if err != nil {
		return err
	}
	if _, ok := reply.(*wire.Credential); ok {
		st.SetDeadline(time.Now().Add(s.stepTimeout))
		if ack, err := wire.ReadExpect[*wire.Ack](st); err == nil && ack.OK {
			s.logger.Info("credential delivered", "machine", x.machineID, "remote", remote)
		}
	}
	return nil
}

// step reads one message, computes the reply and writes it. Failures are
// audited and answered with an Error frame.
func (s *Server) step(ctx context.Context, st stream, x *exchange, fn func(wire.Message) (wire.Message, error)) (wire.Message, error) {
	st.SetDeadline(time.Now().Add(s.stepTimeout))
	var m, reply wire.Message
	err := x.ended() // an exchange ended by an operator reads nothing more
	if err == nil {
		m, err = wire.Read(st)
	}
	if err == nil {
		reply, err = fn(m)
	} else if errors.Is(err, wire.ErrProtocol) {
		err = fail("protocol", err)
	}
	if err != nil {
		x.done = true
		return nil, s.refuse(st, x, err)
	}
	if err := wire.Write(st, reply); err != nil {
		return nil, err
	}
	return reply, nil
}

// refuse audits a failure and tells the agent why, without internals.
func (s *Server) refuse(st stream, x *exchange, err error) error {
	if e := x.ended(); e != nil {
		err = e // why the read or the work was cut short
	}
	var f *Failure
	if !errors.As(err, &f) {
		s.logger.Error("attestation failed", "machine", x.machineID, "remote", x.remote, "error", err)
		f = &Failure{Check: "internal", Reason: "internal server error", Err: err}
	} else {
		s.logger.Warn("attestation refused", "machine", x.machineID, "remote", x.remote, "check", f.Check, "reason", f.Reason)
	}
	s.record(x, "refused", f.Check, f.Reason)
	wire.Write(st, &wire.Error{Code: f.Check, Message: f.Reason})
	return err
}
