package attest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sealroot/sealroot/wire"
)

func TestDescribe(t *testing.T) {
	id := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"pending", &PendingError{MachineID: id}, []string{"waiting for approval", id, "sealroot machine approve " + id[:16]}},
		{"needs_reapproval", &PendingError{MachineID: id, NeedsReapproval: true, Diff: "PCR 4 changed"},
			[]string{"needs re-approval", "sealroot machine approve " + id[:16], "PCR 4 changed"}},
		{"revoked", &RevokedError{Reason: "lost in transit"}, []string{"machine revoked by an operator: lost in transit"}},
		{"refused", &RefusedError{Check: "event-log", Reason: "does not replay"}, []string{`check "event-log" failed: does not replay`}},
		{"home_server_down", &RefusedError{Check: wire.CheckHomeServerDown, Reason: wire.HomeServerDownMessage("boot-a")},
			[]string{"home server boot-a is down or unreachable", "stays unavailable until that server is back"}},
		{"transport", errors.New("dial: timeout"), []string{"attestation failed: dial: timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describe(tt.err)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("describe(%v) = %q, want it to contain %q", tt.err, got, w)
				}
			}
		})
	}
}

// untrustedServer is a QUIC listener on 127.0.0.1 whose certificate no
// agent trusts.
func untrustedServer(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"rogue"}, NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{"sealroot/1"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// Attest keeps retrying a server it cannot trust, prints why each time,
// and stops when its context ends.
func TestAttestRetriesUntilContextEnds(t *testing.T) {
	c, err := New(Config{Servers: []string{untrustedServer(t)}, ServerName: "rogue", Roots: x509.NewCertPool(), Device: nopDevice{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var console bytes.Buffer
	_, err = c.Attest(ctx, &console)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Attest = %v, want the context's deadline", err)
	}
	if !strings.Contains(console.String(), "certificate signed by unknown authority") ||
		!strings.Contains(console.String(), "sealroot: retrying attestation in") {
		t.Errorf("console lacks the retry line:\n%s", console.String())
	}
}

type nopDevice struct{ Device }

// With every server failing, Attest tries each once per round, in the
// shuffled order, and backs off only between rounds.
func TestAttestBacksOffOncePerRound(t *testing.T) {
	servers := []string{untrustedServer(t), untrustedServer(t), untrustedServer(t)}
	order := ShuffleServers(servers, mrand.New(mrand.NewPCG(7, 0)))
	c, err := New(Config{Servers: servers, ServerName: "rogue", Roots: x509.NewCertPool(), Device: nopDevice{},
		Rand: mrand.New(mrand.NewPCG(7, 0))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var console bytes.Buffer
	if _, err := c.Attest(ctx, &console); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Attest = %v, want the context's deadline", err)
	}
	// Every round: each server once, in the shuffled order, then one
	// backoff (a failure does not restart the order).
	var tried []string
	rounds := 0
	for _, line := range strings.Split(console.String(), "\n") {
		if strings.HasPrefix(line, "sealroot: retrying attestation in") {
			if !slices.Equal(tried, order) {
				t.Errorf("round %d tried %q, want each server once in the shuffled order %q\n%s", rounds, tried, order, console.String())
			}
			rounds, tried = rounds+1, nil
			continue
		}
		if rest, ok := strings.CutPrefix(line, "sealroot: attestation server "); ok {
			tried = append(tried, rest[:strings.Index(rest, ": ")])
		}
	}
	if rounds == 0 {
		t.Errorf("no backoff in 3 s:\n%s", console.String())
	}
}
