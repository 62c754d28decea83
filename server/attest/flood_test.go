package attest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/quic-go/quic-go"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// junkSource dials the server from a loopback address of its own, so the
// server sees it as another host (Linux routes all of 127.0.0.0/8 on lo).
type junkSource struct {
	e  *testEnv
	ip string
	tr *quic.Transport
}

func newJunkSource(t *testing.T, e *testEnv, ip string) *junkSource {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close(); pc.Close() })
	return &junkSource{e: e, ip: ip, tr: tr}
}

func (j *junkSource) dial(ctx context.Context) (*quic.Conn, error) {
	addr, err := net.ResolveUDPAddr("udp", j.e.addr)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{RootCAs: j.e.roots, ServerName: "sealroot.test", NextProtos: []string{wire.ALPN}}
	return j.tr.Dial(ctx, addr, tlsConf, &quic.Config{HandshakeIdleTimeout: 5 * time.Second, MaxIdleTimeout: time.Minute})
}

// junk kinds: a connection that says nothing, one that begins a hello and
// stops after three bytes, one that sends bytes that are no frame.
const (
	idle     = "idle"
	halfOpen = "half-open"
	garbage  = "garbage"
)

// open makes one junk connection of kind and returns it still open (for
// garbage: after the server's reply).
func (j *junkSource) open(t *testing.T, kind string) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := j.dial(ctx)
	if err != nil {
		t.Fatalf("%s from %s: dial: %v", kind, j.ip, err)
	}
	t.Cleanup(func() { c.CloseWithError(0, "") })
	if kind == idle {
		return c
	}
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("%s: open stream: %v", kind, err)
	}
	if kind == halfOpen {
		if _, err := st.Write([]byte{wire.Version, byte(wire.TypeHello), 0}); err != nil {
			t.Fatalf("half-open: write: %v", err)
		}
		return c
	}
	st.Write(bytes.Repeat([]byte("junk"), 16))
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := wire.Read(st)
	if em, ok := m.(*wire.Error); err != nil || !ok || em.Code != "protocol" {
		t.Fatalf("garbage: reply = %#v, %v; want a protocol error", m, err)
	}
	return c
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// captureLog sends the server's log (at Debug) to the test and to buf.
func captureLog(t *testing.T, buf *testenv.Buffer) func(*attest.Config) {
	return func(c *attest.Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: io.MultiWriter(buf, testenv.Writer(t, ""))})
	}
}

// auditEntries returns the audit log's entries.
func (e *testEnv) auditEntries(t *testing.T) []audit.Entry {
	t.Helper()
	entries, err := audit.ReadAll(e.auditPath)
	if err != nil {
		t.Fatalf("audit.ReadAll: %v", err)
	}
	return entries
}

// Idle, half-open and garbage connections from one address do not keep a
// genuine machine from attesting, are dropped by the hello and frame
// deadlines, free their exchange slots, and leave no audit record and no
// log line of their own: only counts.
func TestFloodIsDroppedAndGenuineAttests(t *testing.T) {
	const nIdle, nHalf, nGarbage = 10, 3, 5
	var logs testenv.Buffer
	e := newEnv(t, captureLog(t, &logs), func(c *attest.Config) {
		// Fewer server-wide slots than junk connections: a slot per
		// connection (not per exchange) would starve the machine.
		c.MaxSessions = 4
		c.Limits = attest.Limits{HelloTimeout: 1500 * time.Millisecond, FrameTimeout: 1500 * time.Millisecond,
			ConnsPerSource: 32, ExchangesPerSource: 8, RetryAbove: 1000}
	})
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-f")
	before := len(e.auditEntries(t))

	j := newJunkSource(t, e, "127.0.0.2")
	var conns []*quic.Conn
	for _, k := range []struct {
		kind string
		n    int
	}{{idle, nIdle}, {halfOpen, nHalf}, {garbage, nGarbage}} {
		for range k.n {
			conns = append(conns, j.open(t, k.kind))
		}
	}
	waitFor(t, 5*time.Second, "half-open hellos hold no exchange slot", func() bool { return e.srv.Load().Exchanges == nHalf })
	if l := e.srv.Load(); l.Conns < nIdle+nHalf {
		t.Fatalf("load = %+v, want the %d idle and half-open connections held", l, nIdle+nHalf)
	}
	if _, err := attestOnce(t, e.client(t, m.dev, noUnseal)); err != nil {
		t.Fatalf("genuine machine during the flood: %v", err)
	}

	for i, c := range conns {
		select {
		case <-c.Context().Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("junk connection %d still open 5s after its deadline", i)
		}
	}
	waitFor(t, 5*time.Second, "connections and exchanges released", func() bool {
		l := e.srv.Load()
		return l.Conns == 0 && l.Exchanges == 0
	})
	want := attest.Noise{Idle: nIdle, HalfOpen: nHalf, Garbage: nGarbage}
	if n := e.srv.Noise(); n != want {
		t.Errorf("noise = %+v, want %+v", n, want)
	}
	attests := 0
	for _, a := range e.auditEntries(t)[before:] {
		if a.MachineID != m.id || strings.Contains(a.Remote, "127.0.0.2") {
			t.Errorf("audit record of junk: %+v", a)
		}
		if a.Action == "attest" {
			attests++
		}
	}
	if attests != 1 {
		t.Errorf("%d attest records during the flood, want 1 (the genuine release)", attests)
	}
	if strings.Contains(logs.String(), "127.0.0.2") {
		t.Errorf("the log names the junk source:\n%s", grepLines(logs.String(), "127.0.0.2"))
	}
}

func noUnseal(c *agentattest.Config) { c.NoUnseal = true }

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

// A source holds at most ConnsPerSource connections (the next is refused
// in the handshake) and ExchangesPerSource exchanges (the next hello is
// answered with a busy Status naming when to come back); other sources
// are not affected.
func TestPerSourceLimits(t *testing.T) {
	e := newEnv(t, func(c *attest.Config) {
		c.Limits = attest.Limits{HelloTimeout: 10 * time.Second, FrameTimeout: 10 * time.Second,
			ConnsPerSource: 4, ExchangesPerSource: 2, RetryAbove: 1000}
	})
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-l")

	a := newJunkSource(t, e, "127.0.0.3")
	for range 4 {
		a.open(t, idle)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.dial(ctx)
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("fifth connection from one source: %v, want CONNECTION_REFUSED", err)
	}

	b := newJunkSource(t, e, "127.0.0.4")
	b.open(t, halfOpen)
	b.open(t, halfOpen)
	waitFor(t, 5*time.Second, "two exchanges in progress", func() bool { return e.srv.Load().Exchanges == 2 })
	c, err := b.dial(ctx)
	if err != nil {
		t.Fatalf("third connection: %v", err)
	}
	defer c.CloseWithError(0, "")
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	hello, _ := wire.Marshal(&wire.Hello{EKPublic: m.keys.EKPublic, AKPublic: m.keys.AKPublic})
	st.Write(hello)
	reply, err := wire.Read(st)
	if sm, ok := reply.(*wire.Status); err != nil || !ok || sm.State != wire.StateBusy || sm.RetryAfterMillis <= 0 {
		t.Fatalf("third hello from one source = %#v, %v; want status busy with a retry-after", reply, err)
	}

	if _, err := attestOnce(t, e.client(t, m.dev, noUnseal)); err != nil {
		t.Fatalf("machine on another address: %v", err)
	}
	// The client may repeat its Initial packet: each is refused and counted.
	if n := e.srv.Noise(); n.Refused < 1 || n.Busy != 1 {
		t.Errorf("noise = %+v, want refused connection attempts and 1 busy hello", n)
	}
}

// Under load (RetryAbove connections in their handshake, as spoofed
// Initial packets leave them) a new connection first proves its address
// with a QUIC Retry; a genuine agent passes it and attests.
func TestRetryUnderLoad(t *testing.T) {
	e := newEnv(t, func(c *attest.Config) {
		c.Limits = attest.Limits{RetryAbove: 2}
	})
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-r")
	if l := e.srv.Load(); l.Retries != 0 || l.Validated != 0 {
		t.Fatalf("load before = %+v, want no Retry without load", l)
	}
	// Two clients that never finish their handshake: they stop at
	// verifying the server's certificate.
	j := newJunkSource(t, e, "127.0.0.5")
	release := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	for range 2 {
		wg.Go(func() {
			addr, _ := net.ResolveUDPAddr("udp", e.addr)
			tlsConf := &tls.Config{RootCAs: e.roots, ServerName: "sealroot.test", NextProtos: []string{wire.ALPN},
				VerifyConnection: func(tls.ConnectionState) error { <-release; return errors.New("released") }}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			j.tr.Dial(ctx, addr, tlsConf, nil)
		})
	}
	waitFor(t, 5*time.Second, "two connections in their handshake", func() bool { return e.srv.Load().Handshaking == 2 })
	if _, err := attestOnce(t, e.client(t, m.dev, noUnseal)); err != nil {
		t.Fatalf("attest under load: %v", err)
	}
	if l := e.srv.Load(); l.Retries == 0 || l.Validated == 0 {
		t.Fatalf("load = %+v, want the connection validated by a Retry", l)
	}
}

// A client that closes is not a server error: before its hello it is
// counted as noise; a known machine that leaves mid-exchange is audited as
// abandoned. Nothing is logged at ERROR.
func TestClientCloseIsAbandonedNotInternal(t *testing.T) {
	var logs testenv.Buffer
	e := newEnv(t, captureLog(t, &logs))
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-c")
	before := len(e.auditEntries(t))
	j := newJunkSource(t, e, "127.0.0.6")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Open a stream and close it without a byte.
	c, err := j.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	waitFor(t, 5*time.Second, "empty stream counted as abandoned", func() bool { return e.srv.Noise().Abandoned == 1 })
	c.CloseWithError(0, "")
	if got := len(e.auditEntries(t)); got != before {
		t.Errorf("empty stream added %d audit records, want none", got-before)
	}

	// A known machine's hello, then the connection goes.
	c, err = j.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err = c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	hello, _ := wire.Marshal(&wire.Hello{EKPublic: m.keys.EKPublic, AKPublic: m.keys.AKPublic})
	st.Write(hello)
	if reply, err := wire.Read(st); err != nil {
		t.Fatalf("challenge: %v", err)
	} else if _, ok := reply.(*wire.Challenge); !ok {
		t.Fatalf("reply = %#v, want a challenge", reply)
	}
	c.CloseWithError(0, "agent cancelled")
	waitFor(t, 5*time.Second, "abandoned exchange audited", func() bool {
		return e.lastAudit(t, m.id).Outcome == "abandoned"
	})
	if a := e.lastAudit(t, m.id); a.Check != "closed" {
		t.Errorf("audit = %+v, want check closed", a)
	}
	if strings.Contains(logs.String(), "[ERROR]") {
		t.Errorf("a client's close was logged as an error:\n%s", grepLines(logs.String(), "[ERROR]"))
	}
}

// Under load (LoadAbove connections held) each source keeps only a quarter
// of its quota: a busy source is refused while one that holds nothing is
// admitted.
func TestLoadedServerSharesConnections(t *testing.T) {
	e := newEnv(t, func(c *attest.Config) {
		c.Limits = attest.Limits{HelloTimeout: 10 * time.Second, ConnsPerSource: 8, LoadAbove: 4, RetryAbove: 1000}
	})
	busy := newJunkSource(t, e, "127.0.0.13")
	for range 4 {
		busy.open(t, idle)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var te *quic.TransportError
	if _, err := busy.dial(ctx); !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("fifth connection of a busy source under load: %v, want CONNECTION_REFUSED", err)
	}
	quiet := newJunkSource(t, e, "127.0.0.14")
	quiet.open(t, idle)
	quiet.open(t, idle)
	if _, err := quiet.dial(ctx); !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("third connection of a source under load: %v, want CONNECTION_REFUSED (quota 8/4)", err)
	}
}
