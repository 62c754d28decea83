package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/wire"
)

// ErrUnexpectedReply means the server answered a probe with something
// other than the refusal it should send.
var ErrUnexpectedReply = errors.New("loadgen: unexpected reply")

// Target is a running sealroot attestation service.
type Target struct {
	Addr       string         // UDP host:port
	ServerName string         // name in the server certificate
	Roots      *x509.CertPool // the sealroot CA, pinned as agents pin it
}

// Client returns an attestation client of a for t, as the agent builds
// it but with agentattest.Config.NoUnseal (a software TPM cannot import
// the credential, so PCR 15 is never extended and a may attest again).
func (t Target) Client(a *Agent) (*agentattest.Client, error) {
	return agentattest.New(agentattest.Config{
		Servers:    []string{t.Addr},
		ServerName: t.ServerName,
		Roots:      t.Roots,
		Device:     a,
		NoUnseal:   true,
	})
}

// Clients returns a Client for each agent.
func (t Target) Clients(agents []*Agent) ([]*agentattest.Client, error) {
	clients := make([]*agentattest.Client, len(agents))
	for i, a := range agents {
		c, err := t.Client(a)
		if err != nil {
			return nil, err
		}
		clients[i] = c
	}
	return clients, nil
}

// NewAgents creates n agents with the same boot spec, in parallel (RSA key
// generation dominates).
func NewAgents(ctx context.Context, rand io.Reader, n int, spec fakeboot.Spec) ([]*Agent, error) {
	agents := make([]*Agent, n)
	err := parallel(ctx, runtime.GOMAXPROCS(0), n, func(i int) error {
		a, err := NewAgent(rand, spec)
		agents[i] = a
		return err
	})
	if err != nil {
		return nil, err
	}
	return agents, nil
}

// Enroll makes each new agent known to t (its first attestation leaves it
// pending) and approves it through admin, so that it can then attest.
func Enroll(ctx context.Context, t Target, admin api.Service, agents []*Agent) error {
	return parallel(ctx, enrollWidth, len(agents), func(i int) error {
		c, err := t.Client(agents[i])
		if err != nil {
			return err
		}
		_, err = c.AttestOnce(ctx)
		var pending *agentattest.PendingError
		if !errors.As(err, &pending) {
			return fmt.Errorf("enroll agent %d: first attestation = %v, want pending", i, err)
		}
		if _, err := admin.Approve(ctx, pending.MachineID, api.ApproveOptions{}); err != nil {
			return fmt.Errorf("approve %s: %w", pending.MachineID, err)
		}
		return nil
	})
}

// Forget deletes the agents' machine records through admin; agents the
// server does not know are skipped.
func Forget(ctx context.Context, admin api.Service, agents []*Agent) error {
	var errs []error
	for _, a := range agents {
		err := admin.Forget(ctx, wire.MachineID(a.TPM.EKPublic()))
		if err != nil && !errors.Is(err, api.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// AttestOp returns an Op in which worker w's turn runs one full
// attestation of clients[w % len(clients)] on a new connection, up to the
// sealed credential.
func AttestOp(clients []*agentattest.Client) Op {
	return func(ctx context.Context, worker, _ int) error {
		_, err := clients[worker%len(clients)].AttestOnce(ctx)
		return err
	}
}

// RefusedHelloOp returns an Op that opens a connection to t (QUIC and
// TLS 1.3 handshake, as an agent does) and sends a Hello whose EK is
// invalid; the server refuses it at once, before any TPM or store work.
// It measures what every attestation costs in transport.
func (t Target) RefusedHelloOp() Op {
	hello, err := wire.Marshal(&wire.Hello{EKPublic: []byte{1, 2, 3}, AKPublic: []byte{4, 5, 6}})
	return func(ctx context.Context, _, _ int) error {
		if err != nil {
			return err
		}
		return t.refusedHello(ctx, hello)
	}
}

func (t Target) refusedHello(ctx context.Context, hello []byte) error {
	tlsConf := &tls.Config{
		RootCAs:    t.Roots,
		ServerName: t.ServerName,
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{wire.ALPN},
	}
	conn, err := quic.DialAddr(ctx, t.Addr, tlsConf, &quic.Config{
		HandshakeIdleTimeout: 10 * time.Second,
		MaxIdleTimeout:       60 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	if _, err := st.Write(hello); err != nil {
		return fmt.Errorf("write hello: %w", err)
	}
	m, err := wire.Read(st)
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if e, ok := m.(*wire.Error); !ok || e.Code != "ek-public" {
		return fmt.Errorf("%w: %#v to an invalid EK, want error ek-public", ErrUnexpectedReply, m)
	}
	return nil
}

// enrollWidth is how many agents Enroll runs at once.
const enrollWidth = 16

// parallel runs fn(0..n-1) on width goroutines and returns the first
// error; it stops starting calls after an error or when ctx ends.
func parallel(ctx context.Context, width, n int, fn func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, width) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}
