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
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
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
