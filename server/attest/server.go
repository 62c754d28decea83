package attest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/quic-go/quic-go"

	"github.com/sealroot/sealroot/server/admission"
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
	// EKCerts, when set, supplies the certificate of a TPM that sends
	// none (vendor services, operator imports; see server/ekcert).
	EKCerts EKCertSource
	// RequireSecureBoot refuses machines whose event log does not prove
	// UEFI Secure Boot on (PCR 7 SecureBoot = 1), legacy BIOS included.
	// PCR 7 must be in PCRs (it is in DefaultPCRs).
	RequireSecureBoot bool

	PCRs []int // quoted PCR selection; default DefaultPCRs
	// StepTimeout is how long the server waits for the first byte of the
	// agent's evidence after its challenge (the TPM's work); default 30s.
	StepTimeout time.Duration
	RetryAfter  time.Duration // suggested delay for pending agents; default 3s
	MaxSessions int           // exchanges in progress at once; default 256
	// Limits bound what unauthenticated clients can hold.
	Limits Limits
	Rand   io.Reader    // default crypto/rand
	Logger hclog.Logger // default discards
	Now    func() time.Time

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
	// History, when set, keeps the boot history: it is told every
	// outcome, and a release writes its allowed attempt in its own
	// transaction (History).
	History History
	// Observer, when set, is told every outcome after History (metrics).
	Observer Observer
	// Files gives released machines their configuration files. Nil:
	// none.
	Files Files
	// Logins checks the logins of machines whose root is per user
	// (*users.Checker); the Store must then be a store.LeaseStore too.
	// Nil: such machines are refused.
	Logins Logins
	// Cluster, when set, makes this server one of several sharing the
	// store (home.go): every machine's root has a home server, and a
	// release here of a machine homed elsewhere is readied there. Nil:
	// every root is this server's.
	Cluster *Cluster
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
	ekCerts         EKCertSource
	requireSB       bool
	pcrs            []int
	stepTimeout     time.Duration
	retryAfter      time.Duration
	rand            io.Reader
	logger          hclog.Logger
	now             func() time.Time
	tlsConfig       *tls.Config
	exchanges       *admission.Queue[netip.Addr] // MaxSessions exchange slots, taken in the order sources arrived
	limits          Limits
	sources         *sources
	noise           noiseCounters
	retries         atomic.Uint64 // connection attempts answered with a Retry
	validated       atomic.Uint64 // connections accepted with a validated address
	tunnels         Tunnels
	transport       string
	roots           Roots
	withdrawer      roots.Withdrawer
	predictor       Predictor
	live            live // exchanges in progress, by machine
	logs            verifiedLogs
	keys            *keyCache // machines' parsed EK and AK
	history         History
	observer        Observer
	files           Files
	logins          Logins
	leases          store.LeaseStore // nil when the store keeps no leases
	cluster         *Cluster
	readied         readiedBoots // boots readied here as a home server for others' releases
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
		ekCerts:         cfg.EKCerts,
		requireSB:       cfg.RequireSecureBoot,
		pcrs:            cfg.PCRs,
		stepTimeout:     orDefault(cfg.StepTimeout, 30*time.Second),
		retryAfter:      orDefault(cfg.RetryAfter, 3*time.Second),
		rand:            orDefault[io.Reader](cfg.Rand, rand.Reader),
		logger:          orDefault(cfg.Logger, hclog.NewNullLogger()).Named("attest"),
		now:             cfg.Now,
		tunnels:         cfg.Tunnels,
		transport:       orDefault(cfg.RootTransport, TransportWireGuard),
		predictor:       cfg.Predictor,
		roots:           cfg.Roots,
		history:         cfg.History,
		observer:        cfg.Observer,
		withdrawer:      cfg.Withdraw,
		files:           cfg.Files,
		limits:          cfg.Limits.withDefaults(),
		logins:          cfg.Logins,
		cluster:         cfg.Cluster,
		keys:            newKeyCache(maxCachedKeys),
	}
	s.leases, _ = cfg.Store.(store.LeaseStore)
	s.sources = newSources(s.limits)
	// Four times as many may wait in line for a slot as there are slots:
	// a room's hellos wait their hello time rather than come back.
	slots := orDefault(cfg.MaxSessions, 256)
	s.exchanges = admission.NewQueue[netip.Addr](slots, lineFactor*slots, nil)
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
		HandshakeIdleTimeout: 10 * time.Second,
		MaxIdleTimeout:       60 * time.Second,
		// Keeps the connection alive while a person answers (askPerson).
		KeepAlivePeriod:       20 * time.Second,
		MaxIncomingStreams:    1,
		MaxIncomingUniStreams: -1,
	}
}

// errTooManyConns refuses a connection whose source holds its quota.
var errTooManyConns = errors.New("too many connections from this address")

// Serve accepts attestation connections on conn until ctx ends, then waits
// for running sessions to finish. Connections past a source's quota are
// refused during the handshake; under load, new connections must first
// prove their address with a QUIC Retry.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	tr := &quic.Transport{
		Conn:                conn,
		VerifySourceAddress: s.verifySource,
		ConnContext:         s.admit,
	}
	ln, err := tr.Listen(s.tlsConfig, QUICConfig())
	if err != nil {
		return fmt.Errorf("quic listen: %w", err)
	}
	defer tr.Close()
	defer ln.Close()
	s.logger.Info("attestation service listening", "addr", conn.LocalAddr().String())
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.logNoise(ctx) })
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("quic accept: %w", err)
		}
		wg.Go(func() { s.serveConn(ctx, c) })
	}
}

// verifySource is quic-go's VerifySourceAddress hook: it asks for a Retry
// when the server is under load or the source holds half its quota.
func (s *Server) verifySource(a net.Addr) bool {
	if !s.sources.needRetry(sourceAddr(a), s.limits.RetryAbove) {
		return false
	}
	s.retries.Add(1)
	return true
}

// admit is quic-go's ConnContext hook: it counts the connection against
// its source's quota for as long as it lives, or refuses it.
func (s *Server) admit(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
	src := sourceAddr(ci.RemoteAddr)
	if !s.sources.addConn(src) {
		s.noise.refused.Add(1)
		return nil, errTooManyConns
	}
	if ci.AddrVerified {
		s.validated.Add(1)
	}
	h := &handshake{}
	// Closed before it was accepted: it was still in its handshake.
	context.AfterFunc(ctx, func() { s.sources.dropConn(src, h.finish()) })
	return context.WithValue(ctx, handshakeKey{}, h), nil
}

// handshake marks, once, that a connection finished its handshake.
type handshake struct {
	mu   sync.Mutex
	done bool
}

type handshakeKey struct{}

// finish marks the handshake done and reports whether this call did (the
// first one).
func (h *handshake) finish() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := !h.done
	h.done = true
	return first
}

// handshakeDone moves an accepted connection out of the handshaking count.
func (s *Server) handshakeDone(c *quic.Conn) {
	if h, ok := c.Context().Value(handshakeKey{}).(*handshake); ok && h.finish() {
		s.sources.handshakeDone()
	}
}

// serveConn runs one attestation on one connection. The agent has
// HelloTimeout from the end of the handshake to a complete hello.
func (s *Server) serveConn(ctx context.Context, c *quic.Conn) {
	s.handshakeDone(c)
	helloBy := time.Now().Add(s.limits.HelloTimeout)
	// Shutdown closes the connection, which ends any read in progress.
	stop := context.AfterFunc(ctx, func() { c.CloseWithError(errCodeShutdown, "server shutting down") })
	defer stop()
	actx, cancel := context.WithDeadline(ctx, helloBy)
	st, err := c.AcceptStream(actx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.countGone(&goneError{err: err}, false)
			c.CloseWithError(errCodeTimeout, "no hello")
		}
		return
	}
	tlsState := c.ConnectionState().TLS
	exporter, err := tlsState.ExportKeyingMaterial(wire.ExporterLabel, nil, wire.ExporterLength)
	if err != nil {
		c.CloseWithError(errCodeInternal, "exporter")
		return
	}
	x := s.newExchange(c.RemoteAddr().String(), exporter)
	// Refusals and failures were logged and recorded where they happened.
	err = s.converse(ctx, st, x, sourceAddr(c.RemoteAddr()), helloBy)
	st.Close()
	var g *goneError
	if errors.As(err, &g) {
		c.CloseWithError(errCodeTimeout, "gone")
		return
	}
	// Let the agent read the final frame before the connection goes.
	select {
	case <-c.Context().Done():
	case <-time.After(s.limits.FrameTimeout):
		c.CloseWithError(errCodeOK, "done")
	case <-ctx.Done():
	}
}

// Application error codes on connection close.
const (
	errCodeOK       quic.ApplicationErrorCode = 0
	errCodeProtocol quic.ApplicationErrorCode = 1
	errCodeInternal quic.ApplicationErrorCode = 2
	errCodeShutdown quic.ApplicationErrorCode = 3
	errCodeTimeout  quic.ApplicationErrorCode = 4
)

// stream is what the conversation needs of a QUIC stream.
type stream interface {
	io.ReadWriter
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// converse runs the conversation of package wire on one stream. The
// exchange takes its slots (one of MaxSessions, one of its source's
// ExchangesPerSource) at the first byte of the hello and frees them when
// it ends, by deadline at the latest.
func (s *Server) converse(ctx context.Context, st stream, x *exchange, src netip.Addr, helloBy time.Time) error {
	ctx, done := x.endable(ctx, st)
	defer done()
	st = endableStream{stream: st, x: x}
	x.src, x.st = src, st
	defer x.dropSlots()
	begin := func() error { return x.takeSlots(ctx, helloBy) }
	_, err := s.step(ctx, st, x, func() (wire.Message, error) { return s.readMessage(st, helloBy, helloBy, begin) },
		func(m wire.Message) (wire.Message, error) {
			h, ok := m.(*wire.Hello)
			if !ok {
				return nil, fail("protocol", fmt.Errorf("expected hello, got %v", m.Type()))
			}
			return x.start(ctx, h)
		})
	if err != nil || x.done {
		return err
	}
	reply, err := s.step(ctx, st, x, func() (wire.Message, error) { return s.readNext(st, s.stepTimeout) },
		func(m wire.Message) (wire.Message, error) {
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
		m, err := s.readNext(st, s.stepTimeout)
		if ack, ok := m.(*wire.Ack); err == nil && ok && ack.OK {
			s.logger.Info("credential delivered", "machine", x.machineID, "remote", x.remote)
		}
	}
	return nil
}

// lineFactor is how many hellos per exchange slot may wait in line.
const lineFactor = 4

// errBusy refuses a hello when its source, or the server, has no free
// exchange slot; the agent is told when to retry (a busy Status with the
// exchange's retryAfter).
var errBusy = &Failure{Check: "busy", Reason: "server busy: too many attestations in progress, retry later"}

// takeSlots takes x's exchange slots (one of its source's
// ExchangesPerSource, one of MaxSessions), waiting in line for a
// server-wide one until by (admission.Queue: in the order sources first
// asked, a source refused before keeping its place); it does nothing when
// x holds them.
func (x *exchange) takeSlots(ctx context.Context, by time.Time) error {
	if x.slotted {
		return nil
	}
	s := x.s
	if !s.sources.addExchange(x.src) {
		x.retryAfter = max(s.exchanges.Pacer().Hold(), admission.MinRetryAfter)
		return errBusy
	}
	ctx, cancel := context.WithDeadline(ctx, by)
	err := s.exchanges.Take(ctx, x.src)
	cancel()
	var busy *admission.BusyError
	if errors.As(err, &busy) {
		s.sources.dropExchange(x.src)
		x.retryAfter = busy.RetryAfter
		return errBusy
	}
	x.slotted, x.slottedAt = true, time.Now()
	return nil
}

// dropSlots frees the exchange slots x holds, if any.
func (x *exchange) dropSlots() {
	if !x.slotted {
		return
	}
	x.slotted = false
	x.s.exchanges.Release(time.Since(x.slottedAt))
	x.s.sources.dropExchange(x.src)
}

// readNext reads the agent's next message: its first byte within wait,
// the rest within FrameTimeout of it.
func (s *Server) readNext(st stream, wait time.Duration) (wire.Message, error) {
	return s.readMessage(st, time.Now().Add(wait), time.Time{}, nil)
}

// readMessage reads one frame whose first byte must arrive by firstBy and
// whose last must arrive within FrameTimeout of the first (and by lastBy,
// unless zero). begin runs at the first byte; its error ends the read.
// A client that closes, resets or misses a deadline yields a *goneError.
func (s *Server) readMessage(st stream, firstBy, lastBy time.Time, begin func() error) (wire.Message, error) {
	st.SetReadDeadline(firstBy)
	var first [1]byte
	if _, err := io.ReadFull(st, first[:]); err != nil {
		return nil, &goneError{err: err}
	}
	if begin != nil {
		if err := begin(); err != nil {
			return nil, err
		}
	}
	by := time.Now().Add(s.limits.FrameTimeout)
	if !lastBy.IsZero() && lastBy.Before(by) {
		by = lastBy
	}
	st.SetReadDeadline(by)
	r := &errReader{r: st}
	m, err := wire.Read(io.MultiReader(bytes.NewReader(first[:]), r))
	if err != nil && r.err != nil {
		return nil, &goneError{err: r.err, started: true}
	}
	if err != nil && errors.Is(err, wire.ErrProtocol) {
		return nil, fail("protocol", err)
	}
	return m, err
}

// errReader remembers the first error of the stream under a frame, which
// wire.Read reports as a truncated frame.
type errReader struct {
	r   io.Reader
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

// goneError is a client that closed, reset or went silent: not a server
// error, and not a refusal.
type goneError struct {
	err     error
	started bool // a message had begun
}

func (g *goneError) Error() string {
	if g.started {
		return "client left in the middle of a message: " + g.err.Error()
	}
	return "client left: " + g.err.Error()
}

func (g *goneError) Unwrap() error { return g.err }

// timedOut reports whether the server cut the client by a deadline.
func (g *goneError) timedOut() bool {
	var ne net.Error
	return errors.Is(g.err, os.ErrDeadlineExceeded) || errors.Is(g.err, context.DeadlineExceeded) ||
		(errors.As(g.err, &ne) && ne.Timeout())
}

// check names how the client left, for the audit log.
func (g *goneError) check() string {
	if g.timedOut() {
		return "timeout"
	}
	return "closed"
}

// countGone counts a client that left before a complete hello.
func (s *Server) countGone(g *goneError, started bool) {
	switch {
	case !g.timedOut():
		s.noise.abandoned.Add(1)
	case started || g.started:
		s.noise.halfOpen.Add(1)
	default:
		s.noise.idle.Add(1)
	}
}

// step reads one message with read, computes the reply with fn and writes
// it. Failures are answered with an Error frame (see refuse).
func (s *Server) step(ctx context.Context, st stream, x *exchange, read func() (wire.Message, error), fn func(wire.Message) (wire.Message, error)) (wire.Message, error) {
	var m, reply wire.Message
	err := x.ended() // an exchange ended by an operator reads nothing more
	if err == nil {
		m, err = read()
	}
	if err == nil {
		reply, err = fn(m)
	}
	if err != nil {
		x.done = true
		return nil, s.refuse(st, x, err)
	}
	st.SetWriteDeadline(time.Now().Add(s.limits.FrameTimeout))
	if err := wire.Write(st, reply); err != nil {
		return nil, &goneError{err: err}
	}
	return reply, nil
}

// noiseChecks are the failures of a client that has not even named a
// well-formed identity: counted, answered, never audited one by one.
var noiseChecks = map[string]bool{"protocol": true, "ek-public": true, "ak-public": true, "busy": true}

// refuse tells the agent why, without internals, and records the failure:
// in the audit log for an exchange with an identity, in the noise counters
// for junk. A client that left is not a server error.
func (s *Server) refuse(st stream, x *exchange, err error) error {
	if e := x.ended(); e != nil {
		err = e // why the read or the work was cut short
	}
	var g *goneError
	if errors.As(err, &g) {
		s.abandon(x, g)
		return err
	}
	var f *Failure
	if errors.Is(err, store.ErrUnavailable) && !errors.As(err, &f) {
		// Nothing was recorded: the agent may try again (another
		// server shares the same store, so later).
		s.logger.Error("attestation failed: state store unavailable", "machine", x.machineID, "remote", x.remote, "error", err)
		err = &Failure{Check: "store-unavailable", Reason: "the server's state store is unavailable; nothing was recorded, try again later", Err: err}
	}
	if !errors.As(err, &f) {
		s.logger.Error("attestation failed", "machine", x.machineID, "remote", x.remote, "error", err)
		f = &Failure{Check: "internal", Reason: "internal server error", Err: err}
		s.record(x, "refused", f.Check, f.Reason)
	} else if x.nonce == nil && noiseChecks[f.Check] {
		if f == errBusy {
			s.noise.busy.Add(1)
		} else {
			s.noise.garbage.Add(1)
		}
	} else {
		s.logger.Warn("attestation refused", "machine", x.machineID, "remote", x.remote, "check", f.Check, "reason", f.Reason)
		s.record(x, "refused", f.Check, f.Reason)
	}
	st.SetWriteDeadline(time.Now().Add(s.limits.FrameTimeout))
	if f == errBusy {
		wire.Write(st, &wire.Status{State: wire.StateBusy, Reason: f.Reason,
			RetryAfterMillis: max(x.retryAfter, admission.MinRetryAfter).Milliseconds()})
		return err
	}
	wire.Write(st, &wire.Error{Code: f.Check, Message: f.Reason})
	return err
}

// abandon records a client that left: an exchange of a machine the store
// knows is audited as abandoned; anything else is noise.
func (s *Server) abandon(x *exchange, g *goneError) {
	if x.machine == nil {
		s.countGone(g, x.hello != nil)
		return
	}
	s.logger.Info("attestation abandoned by the client", "machine", x.machineID, "remote", x.remote, "how", g.check())
	s.record(x, "abandoned", g.check(), g.Error())
}
