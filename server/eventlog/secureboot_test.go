package eventlog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/fakeboot"
)

// ownerSignatureData is an EFI_SIGNATURE_DATA holding a self-signed
// certificate with subject CN=name, as a db entry.
func ownerSignatureData(t *testing.T, name string) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return append(make([]byte, 16), der...)
}

func TestSecureBoot(t *testing.T) {
	tests := []struct {
		name        string
		on          bool
		authority   []byte
		wantEnabled bool
		wantAuth    []string
	}{
		{"off", false, nil, false, nil},
		{"on_signed_chain", true, ownerSignatureData(t, "sealroot owner"), true, []string{"CN=sealroot owner"}},
		{"on_hash_in_db", true, make([]byte, 16+32), true, []string{"hash"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			spec.SecureBoot, spec.Authority = tt.on, tt.authority
			b, err := fakeboot.Build(spec)
			if err != nil {
				t.Fatal(err)
			}
			st, err := SecureBoot(b.Log, b.Quoted(quotedPCRs...))
			if err != nil {
				t.Fatalf("SecureBoot = %v", err)
			}
			if st.Enabled != tt.wantEnabled || !slices.Equal(st.Authorities, tt.wantAuth) {
				t.Errorf("SecureBoot = %+v, want enabled %v, authorities %q", st, tt.wantEnabled, tt.wantAuth)
			}
		})
	}
}

// TestSecureBootRejects: the state comes only from a log that replays to
// the quoted PCR 7.
func TestSecureBootRejects(t *testing.T) {
	on := testSpec()
	on.SecureBoot = true
	bOn, err := fakeboot.Build(on)
	if err != nil {
		t.Fatal(err)
	}
	off := testSpec()
	bOff, err := fakeboot.Build(off)
	if err != nil {
		t.Fatal(err)
	}
	// A log claiming Secure Boot on, against the PCRs of a boot with it off.
	if _, err := SecureBoot(bOn.Log, bOff.Quoted(quotedPCRs...)); !errors.Is(err, ErrReplay) {
		t.Errorf("SecureBoot(on log, off PCRs) = %v, want ErrReplay", err)
	}
	if _, err := SecureBoot(bOn.Log, bOn.Quoted(0, 4)); !errors.Is(err, ErrNoPCR7) {
		t.Errorf("SecureBoot(without PCR 7) = %v, want ErrNoPCR7", err)
	}
	if _, err := SecureBoot(nil, bOn.Quoted(quotedPCRs...)); err == nil {
		t.Error("SecureBoot(empty log) succeeded")
	}
}
