package attest_test

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/admission"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/test/softtpm"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// A machine that finds every exchange slot taken is told when to come
// back (a busy Status with a retry-after), waits that long and attests
// once the slot is free, over real QUIC with a simulator TPM.
func TestBusyAgentComesBackWhenTold(t *testing.T) {
	e := newEnv(t, func(c *attest.Config) {
		c.MaxSessions = 1
		c.StepTimeout = 3 * time.Second
		c.Limits = attest.Limits{HelloTimeout: time.Second, RetryAbove: 1000}
	})
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-busy")

	// Holds the only slot until StepTimeout cuts it.
	holdSlot(t, newJunkSource(t, e, "127.0.0.5"))
	waitFor(t, 5*time.Second, "the slot taken", func() bool { return e.srv.Load().Exchanges == 1 })

	var console testenv.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.client(t, m.dev, noUnseal).Attest(ctx, &console); err != nil {
		t.Fatalf("Attest: %v\nconsole:\n%s", err, console.String())
	}
	out := console.String()
	if !strings.Contains(out, "attestation server busy") || !strings.Contains(out, "retrying attestation in") {
		t.Errorf("console = %q, want a busy line and its retry", out)
	}
	if n := e.srv.Noise(); n.Busy < 1 {
		t.Errorf("noise = %+v, want the busy hello counted", n)
	}
}

// A client that ignores the retry-after and hammers hellos gets a busy
// Status every time (after waiting its hello time for a slot), and never
// holds more than the server's slots.
func TestBusyIgnoredIsBounded(t *testing.T) {
	const slots, hammers = 2, 8
	e := newEnv(t, func(c *attest.Config) {
		c.MaxSessions = slots
		c.StepTimeout = 30 * time.Second
		c.Limits = attest.Limits{HelloTimeout: 300 * time.Millisecond, RetryAbove: 1000}
	})
	m := newMachine(t, defaultSpec)
	hogs := newJunkSource(t, e, "127.0.0.5")
	for range slots {
		holdSlot(t, hogs)
	}
	waitFor(t, 5*time.Second, "every slot taken", func() bool { return e.srv.Load().Exchanges == slots })

	rude := newJunkSource(t, e, "127.0.0.6")
	for i := range hammers {
		reply, err := sendHello(t, rude, m.keys.EKPublic, m.keys.AKPublic)
		sm, ok := reply.(*wire.Status)
		if err != nil || !ok || sm.State != wire.StateBusy {
			t.Fatalf("hello %d ignoring retry-after = %#v, %v; want status busy", i, reply, err)
		}
		if min := admission.MinRetryAfter.Milliseconds(); sm.RetryAfterMillis < min {
			t.Errorf("hello %d: retry after %d ms, want at least %d ms", i, sm.RetryAfterMillis, min)
		}
		if n := e.srv.Load().Exchanges; n > slots {
			t.Fatalf("exchanges in progress = %d, want at most %d", n, slots)
		}
	}
	if n := e.srv.Noise(); n.Busy != hammers {
		t.Errorf("busy hellos counted = %d, want %d", n.Busy, hammers)
	}
}

// sendHello sends a hello with the given keys from j on a new connection,
// returns the reply and leaves the connection open until the test ends.
func sendHello(t *testing.T, j *junkSource, ekPub, akPub []byte) (wire.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := j.dial(ctx)
	if err != nil {
		t.Fatalf("dial from %s: %v", j.ip, err)
	}
	t.Cleanup(func() { c.CloseWithError(0, "") })
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("open stream from %s: %v", j.ip, err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	hello, _ := wire.Marshal(&wire.Hello{EKPublic: ekPub, AKPublic: akPub})
	st.Write(hello)
	return wire.Read(st)
}

// holdSlot takes an exchange slot from j with the hello of a software TPM
// of its own and then sends no evidence, so that the slot stays taken
// until StepTimeout.
func holdSlot(t *testing.T, j *junkSource) {
	t.Helper()
	tpm, err := softtpm.New(rand.Reader)
	if err != nil {
		t.Fatalf("softtpm: %v", err)
	}
	reply, err := sendHello(t, j, tpm.EKPublic(), tpm.AKPublic())
	if _, ok := reply.(*wire.Challenge); err != nil || !ok {
		t.Fatalf("hello to hold a slot = %#v, %v; want a challenge", reply, err)
	}
}
