package attest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

type noSecrets struct{}

func (noSecrets) PlainSecrets(context.Context, string) (map[string][]byte, error) { return nil, nil }

// personEnv is a Server whose exchanges, run over real QUIC on loopback,
// do nothing but ask a person once (askPerson), so that the slots and
// bounds of waiting can be watched.
type personEnv struct {
	s     *Server
	ln    *quic.Listener
	roots *x509.CertPool
}

func newPersonEnv(t *testing.T, l Limits, maxSessions int) *personEnv {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Init(dir, pki.InitOptions{DNSNames: []string{"sealroot.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		t.Fatalf("pki.Init: %v", err)
	}
	cert, err := pki.LoadServer(dir)
	if err != nil {
		t.Fatalf("pki.LoadServer: %v", err)
	}
	ca, err := pki.LoadCA(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatalf("pki.LoadCA: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	db, err := store.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	al, err := audit.Open(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	t.Cleanup(func() { al.Close() })
	s, err := New(Config{Certificate: cert, Store: db, Audit: al, Secrets: noSecrets{}, Limits: l, MaxSessions: maxSessions})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", s.tlsConfig, QUICConfig())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return &personEnv{s: s, ln: ln, roots: roots}
}

// asking is one exchange in askPerson, seen from both ends.
type asking struct {
	x      *exchange
	client *quic.Stream
	result chan error // askPerson's error, or nil with answer set
	answer wire.Message
}

// ask opens a connection, lets the server's exchange for machineID take
// its slots and ask a person, and returns once the prompt has arrived
// (or the server refused the wait).
func (e *personEnv) ask(t *testing.T, ctx context.Context, machineID string) (*asking, wire.Message) {
	t.Helper()
	tlsConf := &tls.Config{RootCAs: e.roots, ServerName: "sealroot.test", NextProtos: []string{wire.ALPN}}
	c, err := quic.DialAddr(ctx, e.ln.Addr().String(), tlsConf, QUICConfig())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseWithError(0, "") })
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	// Any message opens the exchange, as a hello would.
	if err := wire.Write(st, &wire.Ack{OK: true}); err != nil {
		t.Fatalf("write: %v", err)
	}
	sc, err := e.ln.Accept(ctx)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	sst, err := sc.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("accept stream: %v", err)
	}
	a := &asking{x: e.s.newExchange(sc.RemoteAddr().String(), nil), client: st, result: make(chan error, 1)}
	x := a.x
	x.machineID = machineID
	xctx, done := x.endable(ctx, sst)
	x.src, x.st = sourceAddr(sc.RemoteAddr()), endableStream{stream: sst, x: x}
	e.s.live.add(x)
	if _, err := e.s.readMessage(x.st, time.Now().Add(time.Second), time.Time{}, func() error {
		return x.takeSlots(xctx, time.Now().Add(time.Second))
	}); err != nil {
		t.Fatalf("first message: %v", err)
	}
	go func() {
		defer done()
		defer x.dropSlots()
		m, err := x.askPerson(xctx, &wire.LoginPrompt{})
		if err != nil {
			e.s.refuse(x.st, x, err) // as step does
		}
		a.answer = m
		a.result <- err
	}()
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := wire.Read(st)
	if err != nil {
		t.Fatalf("read prompt: %v", err)
	}
	return a, m
}

func (a *asking) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-a.result:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("askPerson did not return")
		return nil
	}
}

// TestAskPersonFreesSlots: an exchange waiting for a person holds no
// exchange slot, so another machine attests meanwhile even with one
// slot in all; the answer takes a slot again.
func TestAskPersonFreesSlots(t *testing.T) {
	e := newPersonEnv(t, Limits{}, 1)
	ctx := t.Context()
	a, prompt := e.ask(t, ctx, "machine-a")
	if _, ok := prompt.(*wire.LoginPrompt); !ok {
		t.Fatalf("prompt = %T, want *wire.LoginPrompt", prompt)
	}
	if _, _, n := e.s.sources.counts(); n != 0 || e.s.InFlight() != 0 || e.s.Waiting() != 1 {
		t.Fatalf("while waiting: exchanges %d, sessions %d, waiting %d; want 0, 0, 1", n, e.s.InFlight(), e.s.Waiting())
	}
	// The one session slot is free: a second exchange takes it and waits too.
	b, _ := e.ask(t, ctx, "machine-b")
	if err := wire.Write(b.client, &wire.Login{User: "b", Password: []byte("pw")}); err != nil {
		t.Fatalf("answer b: %v", err)
	}
	if err := b.wait(t); err != nil {
		t.Fatalf("askPerson b: %v", err)
	}
	if l, ok := b.answer.(*wire.Login); !ok || l.User != "b" {
		t.Fatalf("answer b = %#v, want the login of b", b.answer)
	}
	// b holds the only slot until its exchange ends (done above drops it
	// when the goroutine returns); a's answer then takes it.
	if err := wire.Write(a.client, &wire.Login{User: "a", Password: []byte("pw")}); err != nil {
		t.Fatalf("answer a: %v", err)
	}
	if err := a.wait(t); err != nil {
		t.Fatalf("askPerson a: %v", err)
	}
	if e.s.Waiting() != 0 {
		t.Fatalf("waiting = %d after the answers, want 0", e.s.Waiting())
	}
}

// TestAskPersonBounds: a source may have WaitingPerSource exchanges
// waiting; the next is refused as busy, without a prompt.
func TestAskPersonBounds(t *testing.T) {
	e := newPersonEnv(t, Limits{WaitingPerSource: 1}, 0)
	ctx := t.Context()
	e.ask(t, ctx, "machine-a")
	b, m := e.ask(t, ctx, "machine-b")
	err := b.wait(t)
	if err != errWaitBusy {
		t.Fatalf("second wait from one source = %v, want errWaitBusy", err)
	}
	if r, ok := m.(*wire.Error); !ok || r.Code != "busy" {
		t.Fatalf("agent got %#v, want a busy error and no prompt", m)
	}
}

// TestAskPersonEndedByRevoke: a revoke during the wait ends it at once
// with the revoke's refusal.
func TestAskPersonEndedByRevoke(t *testing.T) {
	e := newPersonEnv(t, Limits{}, 0)
	a, _ := e.ask(t, t.Context(), "machine-a")
	start := time.Now()
	if n := e.s.EndRevoked("machine-a", "stolen"); n != 1 {
		t.Fatalf("EndRevoked ended %d exchanges, want 1", n)
	}
	err := a.wait(t)
	var f *Failure
	if !errors.As(err, &f) || f.Check != checkRevoked {
		t.Fatalf("askPerson after revoke = %v, want a %q failure", err, checkRevoked)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the wait ended %s after the revoke, want at once", d)
	}
	if e.s.Waiting() != 0 {
		t.Fatalf("waiting = %d after the revoke, want 0", e.s.Waiting())
	}
}

// TestAskPersonTimeout: nobody answers within PersonTimeout; the exchange
// ends as a client gone by timeout.
func TestAskPersonTimeout(t *testing.T) {
	e := newPersonEnv(t, Limits{PersonTimeout: 300 * time.Millisecond}, 0)
	a, _ := e.ask(t, t.Context(), "machine-a")
	err := a.wait(t)
	var g *goneError
	if !errors.As(err, &g) || !g.timedOut() {
		t.Fatalf("askPerson unanswered = %v, want a timeout", err)
	}
}
