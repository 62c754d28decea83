// Package attest is the agent's side of sealroot attestation: it dials the
// pinned sealroot server over QUIC, proves the TPM's identity and boot
// state, and opens the sealed credential. See package wire for the
// conversation and package server/attest for the checks.
package attest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/quic-go/quic-go"

	"github.com/sealroot/sealroot/wire"
)

// Device is the TPM as the protocol needs it. TPMDevice adapts agent/tpm.
type Device interface {
	// Identity returns the TPM's keys and EK certificates.
	Identity(ctx context.Context) (*Identity, error)
	ActivateCredential(ctx context.Context, blob, encSecret []byte) ([]byte, error)
	ReadPCRs(ctx context.Context, pcrs []int) ([]wire.PCR, error)
	Quote(ctx context.Context, qualifying []byte, pcrs []int) (quote, sig []byte, err error)
	EventLog() ([]byte, error)
	// Unseal imports the credential's key under the EK and unseals it.
	Unseal(ctx context.Context, c *wire.Credential) ([]byte, error)
	ExtendPCR(ctx context.Context, pcr int, data []byte) error
}

// Identity is what the agent tells the server about its TPM in Hello.
type Identity struct {
	// EKPublic and AKPublic are the keys' public areas (TPMT_PUBLIC).
	EKPublic, AKPublic []byte
	// EKCert is the EK certificate as stored in NV, or nil.
	EKCert []byte
	// EKChain holds the certificate chain NV indices' contents, or nil.
	EKChain [][]byte
}

// releasedEvent is the data extended into wire.ReleasePCR.
const releasedEvent = "sealroot: credential released"

// Config configures a Client.
type Config struct {
	// Servers are the host:port addresses of equal attestation servers.
	// Attest tries them in a shuffled order (ShuffleServers), one per
	// attempt; AttestOnce in the given order. Every server's certificate
	// must be issued by Roots for ServerName.
	Servers    []string
	ServerName string // name in the server certificate
	Roots      *x509.CertPool
	Device     Device
	Hints      wire.Hints
	// WireGuardKey is the per-boot WireGuard public key, if any.
	WireGuardKey []byte
	Logger       hclog.Logger
	// Rand shuffles Servers and jitters the retry delay. Nil: math/rand/v2's
	// auto-seeded source (it never blocks on the kernel's CRNG). Tests pass
	// a seeded one.
	Rand *mrand.Rand
	// AttemptTimeout bounds one attempt at one server: what a dead or
	// hanging server costs. Default 2 minutes (TCG-emulated TPMs are slow).
	AttemptTimeout time.Duration
	// NoUnseal stops after receiving the credential (load generators
	// without a TPM able to import it).
	NoUnseal bool
	// Login asks a person for a login when the server answers the
	// evidence with a wire.LoginPrompt (a per-user root): it sends each
	// login with send, which returns the server's next prompt, or nil
	// once the server accepted one (login.Asker.Run). Nil: such a
	// server's answer fails the attestation.
	Login func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error
	// Transport, when set, carries the connections: a socket the caller
	// bound (a simulated machine's own address). Nil: a new socket per
	// attempt, as the agent does.
	Transport *quic.Transport
	// Choose asks for an entry of the server's boot menu and returns its
	// ID (agent/menu on the consoles). Nil takes the menu's default.
	Choose func(ctx context.Context, m *wire.Menu) (string, error)
}

// Client attests a machine. Attest may be called again after a failure.
type Client struct {
	cfg    Config
	logger hclog.Logger
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 || cfg.Roots == nil || cfg.Device == nil {
		return nil, errors.New("attest: Servers, Roots and Device are required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Client{cfg: cfg, logger: logger.Named("attest")}, nil
}

// PendingError means the server recorded the machine but has not approved
// it (or needs re-approval after a boot-state change).
type PendingError struct {
	MachineID       string
	NeedsReapproval bool
	Diff            string
	RetryAfter      time.Duration
}

func (e *PendingError) Error() string {
	if e.NeedsReapproval {
		return fmt.Sprintf("boot state changed since approval: run `sealroot machine approve %s` to accept it", e.MachineID)
	}
	return fmt.Sprintf("pending approval: run `sealroot machine approve %s`", e.MachineID)
}

// RevokedError means an operator revoked the machine.
type RevokedError struct{ Reason string }

func (e *RevokedError) Error() string { return "machine revoked by an operator: " + e.Reason }

// RefusedError means the server refused the evidence; Check names the
// failed check (e.g. "event-log", "quote-extra-data").
type RefusedError struct{ Check, Reason string }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("server refused attestation (%s): %s", e.Check, e.Reason)
}

// BusyError means the server is at the pace it can serve and booked this
// machine a time to come back: RetryAfter from now.
type BusyError struct {
	RetryAfter time.Duration
	Reason     string
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("server busy, asked to retry in %s: %s", e.RetryAfter.Round(time.Millisecond), e.Reason)
}

// Result is a successful attestation.
type Result struct {
	Payload    *wire.Payload
	Credential *wire.Credential // as received
}

// AttestOnce runs one attestation against the first server that answers.
func (c *Client) AttestOnce(ctx context.Context) (*Result, error) {
	var errs []error
	for _, addr := range c.cfg.Servers {
		res, err := c.attestAt(ctx, addr, nil)
		if err == nil {
			return res, nil
		}
		if isVerdict(err) || ctx.Err() != nil {
			return nil, err
		}
		c.logger.Warn("attestation server unreachable", "server", addr, "error", err)
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, errors.Join(errs...)
}

// isVerdict reports whether err is the server's answer rather than a
// transport failure (so trying another server would not help).
func isVerdict(err error) bool {
	var p *PendingError
	var r *RevokedError
	var f *RefusedError
	return errors.As(err, &p) || errors.As(err, &r) || errors.As(err, &f) || errors.Is(err, ErrLocalDisk)
}

// ErrLocalDisk means the server honoured a boot menu choice of the local
// disk: the agent sets the firmware's BootNext and reboots.
var ErrLocalDisk = errors.New("boot the local disk")

func (c *Client) tlsConfig() *tls.Config {
	return &tls.Config{
		RootCAs:    c.cfg.Roots,
		ServerName: c.cfg.ServerName,
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{wire.ALPN},
	}
}

// attestAt runs one attestation at addr, bounded by ctx and, outside a
// person's answers, by k (nil: ctx alone).
func (c *Client) attestAt(ctx context.Context, addr string, k *clock) (*Result, error) {
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	k.watch(st)
	tlsState := conn.ConnectionState().TLS
	exporter, err := tlsState.ExportKeyingMaterial(wire.ExporterLabel, nil, wire.ExporterLength)
	if err != nil {
		return nil, fmt.Errorf("tls exporter: %w", err)
	}
	return c.converse(ctx, st, exporter, k)
}

func (c *Client) dial(ctx context.Context, addr string) (*quic.Conn, error) {
	if c.cfg.Transport == nil {
		return quic.DialAddr(ctx, addr, c.tlsConfig(), quicConfig())
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return c.cfg.Transport.Dial(ctx, ua, c.tlsConfig(), quicConfig())
}

func quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout: 10 * time.Second,
		MaxIdleTimeout:       60 * time.Second,
		// Keeps the connection alive while a person answers a prompt.
		KeepAlivePeriod: 20 * time.Second,
	}
}

// converse runs the agent's side of the conversation on one stream.
func (c *Client) converse(ctx context.Context, st io.ReadWriter, exporter []byte, k *clock) (*Result, error) {
	d := c.cfg.Device
	ident, err := d.Identity(ctx)
	if err != nil {
		return nil, fmt.Errorf("tpm identity: %w", err)
	}
	id := wire.MachineID(ident.EKPublic)
	hello := &wire.Hello{
		EKPublic: ident.EKPublic, EKCert: ident.EKCert, EKChain: ident.EKChain, AKPublic: ident.AKPublic,
		Hints: c.cfg.Hints, WireGuardKey: c.cfg.WireGuardKey,
	}
	if err := wire.Write(st, hello); err != nil {
		return nil, err
	}
	m, err := readReply(st)
	if err != nil {
		return nil, err
	}
	ch, ok := m.(*wire.Challenge)
	if !ok {
		return nil, fmt.Errorf("unexpected %v after hello: %w", m.Type(), wire.ErrProtocol)
	}
	if ch.MachineID != id {
		return nil, fmt.Errorf("server named machine %s, but this TPM is %s: %w", ch.MachineID, id, wire.ErrProtocol)
	}
	ev, err := c.evidence(ctx, ch, exporter, id)
	if err != nil {
		return nil, err
	}
	if err := wire.Write(st, ev); err != nil {
		return nil, err
	}
	if m, err = readReply(st); err != nil {
		return nil, err
	}
	if menu, ok := m.(*wire.Menu); ok {
		if m, err = c.choose(ctx, st, menu, k); err != nil {
			return nil, err
		}
	}
	// A per-user root asks for a login (after the menu, if any).
	if p, ok := m.(*wire.LoginPrompt); ok {
		if m, err = c.login(ctx, st, p, k); err != nil {
			return nil, err
		}
	}
	cred, ok := m.(*wire.Credential)
	if !ok {
		return nil, fmt.Errorf("unexpected %v after evidence: %w", m.Type(), wire.ErrProtocol)
	}
	if c.cfg.NoUnseal {
		return &Result{Credential: cred}, nil
	}
	p, err := c.open(ctx, cred, exporter, id)
	if err != nil {
		return nil, err
	}
	wire.Write(st, &wire.Ack{OK: true})
	return &Result{Payload: p, Credential: cred}, nil
}

// ErrNoLogin means the server asks for a user's login and the agent has
// no way to ask one (Config.Login is nil).
var ErrNoLogin = errors.New("the server asks for a user login (per-user root) and this agent has no console to ask on")

// login runs the person's logins for a per-user root and returns the
// server's answer to the accepted one.
func (c *Client) login(ctx context.Context, st io.ReadWriter, first *wire.LoginPrompt, k *clock) (wire.Message, error) {
	if c.cfg.Login == nil {
		return nil, ErrNoLogin
	}
	k.pause()
	defer k.resume()
	var final wire.Message
	err := c.cfg.Login(ctx, first, func(ctx context.Context, l *wire.Login) (*wire.LoginPrompt, error) {
		if err := wire.Write(st, l); err != nil {
			return nil, err
		}
		m, err := readReply(st)
		if err != nil {
			return nil, err
		}
		if next, ok := m.(*wire.LoginPrompt); ok {
			return next, nil
		}
		final = m
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	return final, nil
}

// choose answers the server's boot menu and returns its reply.
func (c *Client) choose(ctx context.Context, st io.ReadWriter, menu *wire.Menu, k *clock) (wire.Message, error) {
	id := menu.Default
	if c.cfg.Choose != nil {
		var err error
		k.pause()
		id, err = c.cfg.Choose(ctx, menu)
		k.resume()
		if err != nil {
			return nil, fmt.Errorf("boot menu: %w", err)
		}
	}
	c.logger.Info("boot menu choice", "entry", id)
	if err := wire.Write(st, &wire.Choice{ID: id}); err != nil {
		return nil, err
	}
	return readReply(st)
}

// readReply reads a server message and turns verdicts into typed errors.
func readReply(st io.Reader) (wire.Message, error) {
	m, err := wire.Read(st)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *wire.Error:
		return nil, &RefusedError{Check: m.Code, Reason: m.Message}
	case *wire.Status:
		return nil, statusError(m)
	}
	return m, nil
}

func statusError(s *wire.Status) error {
	switch s.State {
	case wire.StatePending, wire.StateNeedsReapproval:
		return &PendingError{
			MachineID:       s.MachineID,
			NeedsReapproval: s.State == wire.StateNeedsReapproval,
			Diff:            s.Diff,
			RetryAfter:      time.Duration(s.RetryAfterMillis) * time.Millisecond,
		}
	case wire.StateRevoked:
		return &RevokedError{Reason: s.Reason}
	case wire.StateBusy:
		return &BusyError{RetryAfter: time.Duration(s.RetryAfterMillis) * time.Millisecond, Reason: s.Reason}
	case wire.StateLocalDisk:
		return ErrLocalDisk
	}
	return &RefusedError{Check: string(s.State), Reason: s.Reason}
}

// evidence activates the credential and quotes the requested PCRs.
func (c *Client) evidence(ctx context.Context, ch *wire.Challenge, exporter []byte, id string) (*wire.Evidence, error) {
	d := c.cfg.Device
	secret, err := d.ActivateCredential(ctx, ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		return nil, fmt.Errorf("activate credential: %w", err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(wire.ActivationProofData(ch.Nonce, exporter, id))
	clear(secret)
	pcrs, err := d.ReadPCRs(ctx, ch.PCRs)
	if err != nil {
		return nil, fmt.Errorf("read PCRs: %w", err)
	}
	quote, sig, err := d.Quote(ctx, wire.QualifyingData(ch.Nonce, exporter, id), ch.PCRs)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	log, err := d.EventLog()
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	return &wire.Evidence{ActivationProof: mac.Sum(nil), Quote: quote, Signature: sig, PCRs: pcrs, EventLog: log}, nil
}

// open unseals the credential key, extends PCR 15 and decrypts the payload.
func (c *Client) open(ctx context.Context, cred *wire.Credential, exporter []byte, id string) (*wire.Payload, error) {
	d := c.cfg.Device
	key, err := d.Unseal(ctx, cred)
	if err != nil {
		return nil, fmt.Errorf("unseal credential: %w", err)
	}
	defer clear(key)
	// Extend first: whatever happens next, this boot cannot unseal again.
	if err := d.ExtendPCR(ctx, wire.ReleasePCR, []byte(releasedEvent)); err != nil {
		return nil, fmt.Errorf("extend PCR %d: %w", wire.ReleasePCR, err)
	}
	plain, err := wire.OpenPayload(key, cred.Ciphertext, wire.CredentialAAD(exporter, id))
	if err != nil {
		return nil, fmt.Errorf("open payload: %w", err)
	}
	defer clear(plain)
	var p wire.Payload
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	if p.MachineID != id {
		return nil, fmt.Errorf("payload for machine %s, this TPM is %s", p.MachineID, id)
	}
	return &p, nil
}
