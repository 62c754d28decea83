package secureboot

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"
)

// owner returns the key and certificate Init wrote in a new directory.
func owner(t *testing.T, cn string) (dir string, key *rsa.PrivateKey, cert *x509.Certificate) {
	t.Helper()
	dir = t.TempDir()
	if err := Init(dir, cn, false); err != nil {
		t.Fatal(err)
	}
	kb, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	blk, _ := pem.Decode(kb)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := os.ReadFile(filepath.Join(dir, DERFile))
	if cert, err = x509.ParseCertificate(cb); err != nil {
		t.Fatal(err)
	}
	return dir, k.(*rsa.PrivateKey), cert
}

// TestUpdateMatchesEfitools signs db updates (replace and append) with a
// KEK key and compares them byte for byte with efitools'
// sign-efi-sig-list given the same key, certificate and timestamp, and
// the signed payload with its -o output.
func TestUpdateMatchesEfitools(t *testing.T) {
	testenv.RequireTools(t, "sign-efi-sig-list")
	kekDir, kekKey, kekCert := owner(t, "site KEK")
	dbDir, _, _ := owner(t, "sealroot owner")
	esl := filepath.Join(dbDir, ESLFile)
	data, _ := os.ReadFile(esl)
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		u      Update
		args   []string
		prefix []string
	}{
		{"db_replace", Update{Name: "db", Data: data, Time: at}, nil, nil},
		{"db_append", Update{Name: "db", Data: data, Time: at, Append: true}, []string{"-a"}, nil},
		{"kek_replace", Update{Name: "KEK", Data: data, Time: at}, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"-t", "2026-12-03 10:00:00"}, tt.args...)
			payloadCmd := exec.Command("sign-efi-sig-list", append(args, "-o", tt.u.Name, esl, out+".payload")...)
			if b, err := payloadCmd.CombinedOutput(); err != nil {
				t.Fatalf("sign-efi-sig-list -o: %v: %s", err, b)
			}
			signCmd := exec.Command("sign-efi-sig-list", append(args, "-k", filepath.Join(kekDir, KeyFile), "-c", filepath.Join(kekDir, CertFile), tt.u.Name, esl, out)...)
			if b, err := signCmd.CombinedOutput(); err != nil {
				t.Fatalf("sign-efi-sig-list: %v: %s", err, b)
			}
			wantPayload, _ := os.ReadFile(out + ".payload")
			payload, err := tt.u.Payload()
			if err != nil || !bytes.Equal(payload, wantPayload) {
				t.Errorf("Payload = %x, %v\nwant (sign-efi-sig-list -o) %x", payload, err, wantPayload)
			}
			want, _ := os.ReadFile(out)
			got, err := tt.u.Sign(kekKey, kekCert)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				os.WriteFile(out+".go", got, 0o644)
				t.Errorf("Sign differs from sign-efi-sig-list: %d bytes, want %d (kept in %s and %s.go)", len(got), len(want), out, out)
			}
		})
	}
	if _, err := (Update{Name: "MokList", Time: at}).Sign(kekKey, kekCert); !errors.Is(err, ErrVariable) {
		t.Errorf("Sign(MokList) = %v, want ErrVariable", err)
	}
}
