package attest_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/wire"
)

// Fifty machines boot at once: each is enrolled, approved, and then all
// attest concurrently and get their own credential.
func TestFiftyConcurrentAgents(t *testing.T) {
	const n = 50
	// All fifty come from 127.0.0.1, as on no LAN: lift the per-source limits.
	e := newEnv(t, func(c *attest.Config) {
		c.Limits.ConnsPerSource, c.Limits.ExchangesPerSource, c.Limits.RetryAbove = n, n, 2*n
	})
	agents := make([]*loadgen.Agent, n)
	clients := make([]*agentattest.Client, n)
	for i := range agents {
		a, err := loadgen.NewAgent(rand.Reader, loadgen.DefaultSpec())
		if err != nil {
			t.Fatalf("agent %d: %v", i, err)
		}
		agents[i] = a
		clients[i] = e.client(t, a, func(c *agentattest.Config) { c.NoUnseal = true })
	}
	run := func(check func(i int, res *agentattest.Result, err error)) {
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := attestOnce(t, clients[i])
				check(i, res, err)
			}()
		}
		wg.Wait()
	}
	run(func(i int, _ *agentattest.Result, err error) {
		var p *agentattest.PendingError
		if !errors.As(err, &p) {
			t.Errorf("agent %d first boot = %v, want pending", i, err)
		}
	})
	ms, err := e.mgr.Machines(context.Background())
	if err != nil || len(ms) != n {
		t.Fatalf("machines = %d (%v), want %d distinct", len(ms), err, n)
	}
	for _, m := range ms {
		if _, err := e.mgr.Approve(context.Background(), m.ID, api.ApproveOptions{}); err != nil {
			t.Fatalf("approve %s: %v", m.ID, err)
		}
	}
	seen := make(map[string]bool)
	var mu sync.Mutex
	run(func(i int, res *agentattest.Result, err error) {
		if err != nil {
			t.Errorf("agent %d: %v", i, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		seen[string(res.Credential.Duplicate)] = true
	})
	if len(seen) != n {
		t.Errorf("%d distinct credentials, want %d", len(seen), n)
	}
}

// rawExchange sends frames on a fresh connection and returns the server's
// first reply.
func rawExchange(t *testing.T, e *testEnv, frames ...[]byte) wire.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, e.addr, &tls.Config{RootCAs: e.roots, ServerName: "sealroot.test", NextProtos: []string{wire.ALPN}}, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	st.SetDeadline(time.Now().Add(20 * time.Second))
	for _, f := range frames {
		if _, err := st.Write(f); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	m, err := wire.Read(st)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return m
}

func TestMalformedMessagesGetProtocolErrors(t *testing.T) {
	e := newEnv(t)
	evidence, _ := wire.Marshal(&wire.Ack{OK: true})
	badEK, _ := wire.Marshal(&wire.Hello{EKPublic: []byte{1, 2, 3}, AKPublic: []byte{4, 5, 6}})
	tests := []struct {
		name  string
		frame []byte
		code  string
	}{
		{"unknown_version", []byte{9, 1, 0, 0, 0, 2, '{', '}'}, "protocol"},
		{"oversized", []byte{wire.Version, byte(wire.TypeHello), 0x7f, 0xff, 0xff, 0xff}, "protocol"},
		{"garbage_json", []byte{wire.Version, byte(wire.TypeHello), 0, 0, 0, 3, 'x', 'y', 'z'}, "protocol"},
		{"wrong_first_message", evidence, "protocol"},
		{"not_an_ek", badEK, "ek-public"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := rawExchange(t, e, tt.frame)
			em, ok := m.(*wire.Error)
			if !ok || em.Code != tt.code {
				t.Fatalf("reply = %#v, want protocol error %q", m, tt.code)
			}
		})
	}
	// The server survived all of it.
	a, err := loadgen.NewAgent(rand.Reader, loadgen.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	_, err = attestOnce(t, e.client(t, a, func(c *agentattest.Config) { c.NoUnseal = true }))
	var p *agentattest.PendingError
	if !errors.As(err, &p) {
		t.Fatalf("attest after malformed input = %v, want pending", err)
	}
}
