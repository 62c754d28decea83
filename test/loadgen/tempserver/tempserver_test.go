package tempserver_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/test/loadgen/tempserver"
)

// Two simulated machines enroll, get approved and attest repeatedly; the
// refused-hello probe gets its refusal; Close removes the state.
func TestEnrollAttestAndProbe(t *testing.T) {
	ctx := context.Background()
	s, err := tempserver.Start(ctx, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	agents, err := loadgen.NewAgents(ctx, rand.Reader, 2, loadgen.DefaultSpec())
	if err != nil {
		t.Fatalf("NewAgents: %v", err)
	}
	if err := loadgen.Enroll(ctx, s.Target, s.Admin(), agents); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	ms, err := s.Admin().Machines(ctx)
	if err != nil || len(ms) != 2 || ms[0].State != api.StateApproved || ms[1].State != api.StateApproved {
		t.Fatalf("machines after Enroll = %v (%v), want 2 approved", ms, err)
	}
	clients, err := s.Target.Clients(agents)
	if err != nil {
		t.Fatal(err)
	}
	opts := loadgen.Options{N: 6, Concurrency: 2}
	for name, op := range map[string]loadgen.Op{"attest": loadgen.AttestOp(clients), "refused_hello": s.Target.RefusedHelloOp()} {
		st, err := loadgen.Run(ctx, opts, op)
		if err != nil || st.Errors != 0 || st.N != 6 {
			t.Errorf("%s: N=%d Errors=%d (%v, %v), want 6 successes", name, st.N, st.Errors, st.Err, err)
		}
	}
	if err := loadgen.Forget(ctx, s.Admin(), agents); err != nil {
		t.Errorf("Forget: %v", err)
	}
	if ms, err := s.Admin().Machines(ctx); err != nil || len(ms) != 0 {
		t.Errorf("machines after Forget = %d (%v), want 0", len(ms), err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(s.CAFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state left after Close: stat %s = %v", s.CAFile, err)
	}
}

// A client pinning another name or another CA gets no connection.
func TestProbeChecksServerCertificate(t *testing.T) {
	ctx := context.Background()
	s, err := tempserver.Start(ctx, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	wrongName := s.Target
	wrongName.ServerName = "sealroot.invalid"
	wrongCA := s.Target
	wrongCA.Roots = x509.NewCertPool()
	for name, target := range map[string]loadgen.Target{"wrong_name": wrongName, "wrong_ca": wrongCA} {
		t.Run(name, func(t *testing.T) {
			st, _ := loadgen.Run(ctx, loadgen.Options{N: 1, Concurrency: 1}, target.RefusedHelloOp())
			var unknown x509.UnknownAuthorityError
			var hostname x509.HostnameError
			if st.Errors != 1 || !(errors.As(st.Err, &unknown) || errors.As(st.Err, &hostname)) {
				t.Errorf("probe errors = %d (%v), want a certificate verification failure", st.Errors, st.Err)
			}
		})
	}
}
