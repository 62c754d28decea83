package attest_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
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

// A machine refused after its hello time in line keeps its place: when it
// comes back, a hello from a source that first asked after it (waiting in
// the full line) is refused instead, and the machine takes the slot as
// soon as it is free, over real QUIC.
func TestReturningBusyMachineGoesAheadOfLaterArrivals(t *testing.T) {
	e := newEnv(t, func(c *attest.Config) {
		c.MaxSessions = 1 // and a line of lineFactor
		c.StepTimeout = 4 * time.Second
		c.Limits = attest.Limits{HelloTimeout: 3 * time.Second, RetryAbove: 1000}
	})
	booked, err := softtpm.New(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	later, err := softtpm.New(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	// Holds the only slot until StepTimeout cuts it, 4 s from now.
	holdSlot(t, newJunkSource(t, e, "127.0.0.5"))
	waitFor(t, 5*time.Second, "the slot taken", func() bool { return e.srv.Load().Exchanges == 1 })

	bookedSrc, laterSrc := newJunkSource(t, e, "127.0.0.7"), newJunkSource(t, e, "127.0.0.8")
	reply, err := sendHello(t, bookedSrc, booked.EKPublic(), booked.AKPublic())
	if sm, ok := reply.(*wire.Status); err != nil || !ok || sm.State != wire.StateBusy {
		t.Fatalf("first hello = %#v, %v; want status busy after its hello time", reply, err)
	}

	type answer struct {
		m   wire.Message
		err error
	}
	laterReply := make(chan answer, 1)
	go func() {
		m, err := sendHello(t, laterSrc, later.EKPublic(), later.AKPublic())
		laterReply <- answer{m, err}
	}()
	waitFor(t, 2*time.Second, "the later machine in line", func() bool { return e.srv.Load().Queued == 1 })

	// Back at once (well before the slot frees): its place is first.
	reply, err = sendHello(t, bookedSrc, booked.EKPublic(), booked.AKPublic())
	if _, ok := reply.(*wire.Challenge); err != nil || !ok {
		t.Errorf("hello of the machine back = %T, %v; want the challenge (the slot, ahead of the later machine)", reply, err)
	}
	a := <-laterReply
	if sm, ok := a.m.(*wire.Status); a.err != nil || !ok || sm.State != wire.StateBusy {
		t.Errorf("hello of the later machine = %T, %v; want status busy (behind the machine back at its place)", a.m, a.err)
	}
}

// A flood of hellos from many sources while every slot is taken: no more
// than LineFactor per slot wait in line, each source no more than its
// exchanges, and every one of them is answered busy.
func TestHelloFloodLineIsBounded(t *testing.T) {
	const slots, sources, perSource = 2, 6, 4
	e := newEnv(t, func(c *attest.Config) {
		c.MaxSessions = slots
		c.StepTimeout = 30 * time.Second
		c.Limits = attest.Limits{HelloTimeout: time.Second, RetryAbove: 1000, ExchangesPerSource: perSource}
	})
	m := newMachine(t, defaultSpec)
	hogs := newJunkSource(t, e, "127.0.0.5")
	for range slots {
		holdSlot(t, hogs)
	}
	waitFor(t, 5*time.Second, "every slot taken", func() bool { return e.srv.Load().Exchanges == slots })

	replies := make(chan wire.Message, sources*(perSource+2))
	var floods []*junkSource
	for i := range sources {
		floods = append(floods, newJunkSource(t, e, fmt.Sprintf("127.0.1.%d", i+1)))
	}
	stop := make(chan struct{})
	most := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				most <- n
				return
			case <-time.After(5 * time.Millisecond):
				n = max(n, e.srv.Load().Queued)
			}
		}
	}()
	var wg sync.WaitGroup
	for _, j := range floods {
		for range perSource + 2 {
			wg.Go(func() {
				reply, err := sendHello(t, j, m.keys.EKPublic, m.keys.AKPublic)
				if err != nil {
					t.Errorf("hello from %s: %v", j.ip, err)
				}
				replies <- reply
			})
		}
	}
	wg.Wait()
	close(stop)
	close(replies)
	for reply := range replies {
		if sm, ok := reply.(*wire.Status); !ok || sm.State != wire.StateBusy {
			t.Errorf("flood hello = %#v, want status busy", reply)
		}
	}
	if n, line := <-most, attest.LineFactor*slots; n > line {
		t.Errorf("most hellos in line = %d, want at most %d (%d per slot)", n, line, attest.LineFactor)
	}
	if l := e.srv.Load(); l.Exchanges != slots || l.Queued != 0 {
		t.Errorf("load after the flood = %+v, want %d exchanges and none in line", l, slots)
	}
	if n := e.srv.Noise(); n.Busy != sources*(perSource+2) {
		t.Errorf("busy hellos counted = %d, want %d", n.Busy, sources*(perSource+2))
	}
}
