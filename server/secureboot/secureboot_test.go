package secureboot

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/uki"
)

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secureboot")
	if err := Init(dir, "sealroot test owner", false); err != nil {
		t.Fatalf("Init = %v", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok || cert.PublicKey.(*rsa.PublicKey).N.BitLen() != 2048 {
		t.Errorf("owner key is %T, want RSA-2048 (what firmware verifies)", cert.PublicKey)
	}
	if der, _ := os.ReadFile(filepath.Join(dir, DERFile)); !bytes.Equal(der, cert.Raw) {
		t.Error("owner.der differs from owner.crt")
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("owner.key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if err := Init(dir, "again", false); !errors.Is(err, ErrExists) {
		t.Errorf("second Init = %v, want ErrExists", err)
	}
	if err := Init(dir, "again", true); err != nil {
		t.Errorf("Init(force) = %v", err)
	}
}

// TestSignatureListMatchesEfitools: owner.esl is byte for byte what
// efitools' cert-to-efi-sig-list makes of the same certificate and owner.
func TestSignatureListMatchesEfitools(t *testing.T) {
	testenv.RequireTools(t, "cert-to-efi-sig-list")
	dir := t.TempDir()
	if err := Init(dir, "sealroot test owner", false); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "efitools.esl")
	if out, err := exec.Command("cert-to-efi-sig-list", "-g", OwnerGUID, filepath.Join(dir, CertFile), want).CombinedOutput(); err != nil {
		t.Fatalf("cert-to-efi-sig-list: %v: %s", err, out)
	}
	a, _ := os.ReadFile(filepath.Join(dir, ESLFile))
	b, _ := os.ReadFile(want)
	if !bytes.Equal(a, b) {
		t.Errorf("owner.esl (%d bytes) differs from cert-to-efi-sig-list's (%d bytes)", len(a), len(b))
	}
	if _, err := SignatureList([]byte("not a certificate")); err == nil {
		t.Error("SignatureList(junk) succeeded")
	}
}

// TestSignVerifies signs a UKI built from the systemd stub; sbverify accepts
// it with the owner certificate and refuses it with another, and signing
// leaves the Authenticode hash (PCR 4) unchanged.
func TestSignVerifies(t *testing.T) {
	testenv.RequireTools(t, "sbsign", "sbverify", uki.DefaultStub)
	dir, other := t.TempDir(), t.TempDir()
	if err := Init(dir, "sealroot owner", false); err != nil {
		t.Fatal(err)
	}
	if err := Init(other, "someone else", false); err != nil {
		t.Fatal(err)
	}
	img, err := uki.BuildFile(uki.DefaultStub, uki.Parts{Linux: []byte("kernel"), Initrd: []byte("initrd"), Cmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "uki.efi")
	if err := os.WriteFile(in, img, 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := uki.Authenticode(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := Sign(context.Background(), dir, in, in); err != nil {
		t.Fatalf("Sign = %v", err)
	}
	if out, err := exec.Command("sbverify", "--cert", filepath.Join(dir, CertFile), in).CombinedOutput(); err != nil {
		t.Errorf("sbverify(owner) = %v: %s", err, out)
	}
	if out, err := exec.Command("sbverify", "--cert", filepath.Join(other, CertFile), in).CombinedOutput(); err == nil {
		t.Errorf("sbverify(another owner's certificate) accepted the image: %s", out)
	}
	signed, _ := os.ReadFile(in)
	after, err := uki.Authenticode(signed)
	if err != nil || after != before {
		t.Errorf("Authenticode hash after signing = %x, %v; want unchanged %x", after, err, before)
	}
	if err := Sign(context.Background(), dir, filepath.Join(t.TempDir(), "missing.efi"), in); err == nil {
		t.Error("Sign(missing file) succeeded")
	}
}
