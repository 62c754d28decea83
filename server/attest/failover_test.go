package attest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/quic-go/quic-go"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// peer starts a second attestation server on 127.0.0.1 in front of the
// same store, secrets and audit log as e, with its own server certificate
// from e's CA (servers of one site share the CA the initramfs pins). stop
// ends it and closes its UDP port.
func (e *testEnv) peer(t *testing.T, name string) (addr string, stop func()) {
	t.Helper()
	return e.peerWith(t, name, e.issueServer(t))
}

// peerWith is peer serving cert.
func (e *testEnv) peerWith(t *testing.T, name string, cert tls.Certificate, mod ...func(*attest.Config)) (addr string, stop func()) {
	t.Helper()
	cfg := attest.Config{Certificate: cert, Store: e.db, Audit: e.audit, Secrets: e.mgr,
		Logger: testenv.Logger(t, name, hclog.Debug)}
	for _, m := range mod {
		m(&cfg)
	}
	srv, err := attest.New(cfg)
	if err != nil {
		t.Fatalf("attest.New: %v", err)
	}
	addr, stop = serve(t, name, srv)
	t.Cleanup(stop)
	return addr, stop
}

// issueServer issues a server certificate of its own from e's CA.
func (e *testEnv) issueServer(t *testing.T) tls.Certificate {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(e.dir, pki.CACertFile), filepath.Join(e.dir, pki.CAKeyFile))
	if err != nil {
		t.Fatalf("load CA: %v", err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "sealroot peer"},
		DNSNames:     []string{"sealroot.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatalf("issue peer certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// hangingServer is a QUIC listener with cert that completes the
// handshake, accepts the agent's stream and never answers.
func hangingServer(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		NextProtos: []string{wire.ALPN}, MinVersion: tls.VersionTLS13}, nil)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []*quic.Conn
		defer func() {
			for _, c := range conns {
				c.CloseWithError(0, "")
			}
		}()
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// The agent's client fails over from a stopped server (closed UDP port),
// a server that accepts and hangs, and a server whose certificate is not
// from the pinned CA, to a live one sharing the store: one attempt lost to
// each, no backoff, and the rogue server is never trusted.
func TestAttestFailsOverToLiveServer(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-1")

	live, _ := e.peer(t, "live")
	stopped, stop := e.peer(t, "stopped")
	stop()
	hanging := hangingServer(t, e.issueServer(t))
	rogue := hangingServer(t, newEnv(t).issueServer(t)) // another CA
	servers := []string{live, stopped, hanging, rogue}

	// A seed whose order puts the live server last, so every other server
	// is tried first.
	var seed uint64
	var order []string
	for seed = 1; ; seed++ {
		order = agentattest.ShuffleServers(servers, mrand.New(mrand.NewPCG(seed, 0)))
		if order[len(order)-1] == live {
			break
		}
	}
	c := e.client(t, m.dev, func(c *agentattest.Config) {
		c.Servers = servers
		c.Rand = mrand.New(mrand.NewPCG(seed, 0))
		c.AttemptTimeout = 5 * time.Second // what a hanging or silent server costs, twice
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var console bytes.Buffer
	res, err := c.Attest(ctx, &console)
	if err != nil {
		t.Fatalf("Attest = %v, want success through %s\nconsole:\n%s", err, live, console.String())
	}
	if res.Payload.MachineName != "node-1" {
		t.Errorf("payload machine = %q, want node-1", res.Payload.MachineName)
	}
	var failed []string
	for _, line := range strings.Split(console.String(), "\n") {
		for _, s := range servers {
			if strings.HasPrefix(line, "sealroot: attestation server "+s+":") {
				failed = append(failed, s)
			}
		}
	}
	if want := order[:len(order)-1]; !slices.Equal(failed, want) {
		t.Errorf("failed attempts = %q, want one per dead server in the shuffled order %q\nconsole:\n%s", failed, want, console.String())
	}
	if !strings.Contains(console.String(), "sealroot: attestation server "+rogue+": attestation failed: dial: ") ||
		!strings.Contains(console.String(), "x509: certificate signed by unknown authority") {
		t.Errorf("console does not show the rogue server refused for its certificate:\n%s", console.String())
	}
	if strings.Contains(console.String(), "retrying attestation in") {
		t.Errorf("Attest backed off although a live server was left:\n%s", console.String())
	}
}

// The order is shuffled: over seeds, every server comes first, and a
// seed gives the same order every time.
func TestShuffleServers(t *testing.T) {
	servers := []string{"a:1", "b:1", "c:1"}
	first := map[string]bool{}
	for seed := range uint64(64) {
		got := agentattest.ShuffleServers(servers, mrand.New(mrand.NewPCG(seed, 0)))
		again := agentattest.ShuffleServers(servers, mrand.New(mrand.NewPCG(seed, 0)))
		if !slices.Equal(got, again) {
			t.Fatalf("seed %d: order %q then %q, want the same", seed, got, again)
		}
		sorted := slices.Sorted(slices.Values(got))
		if !slices.Equal(sorted, servers) {
			t.Fatalf("seed %d: order %q is not a permutation of %q", seed, got, servers)
		}
		first[got[0]] = true
	}
	if len(first) != len(servers) {
		t.Errorf("first servers over 64 seeds = %v, want each of %q", first, servers)
	}
}
