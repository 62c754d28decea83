package uki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"
)

// kernelGlob finds the Debian kernel initramfs.FetchKernel caches.
const kernelGlob = "../build/cache/linux-image-*/boot/vmlinuz-*"

var calculatedRE = regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-Fa-f]{64})`)

// osslDigest signs in (a copy) with a throwaway certificate, since
// osslsigncode prints its calculated digest only for signed files, and
// returns the signed file and the digest osslsigncode calculated for it.
// Signing pads the file to 8 bytes, so for files of other lengths the
// digest covers the padding.
func osslDigest(t *testing.T, in string) ([]byte, string) {
	t.Helper()
	tool := testenv.LookTool(t, "osslsigncode")
	dir := t.TempDir()
	cert, key := throwawayCert(t, dir)
	signed := filepath.Join(dir, "signed.efi")
	if out, err := exec.Command(tool, "sign", "-certs", cert, "-key", key, "-h", "sha256", "-in", in, "-out", signed).CombinedOutput(); err != nil {
		t.Fatalf("osslsigncode sign: %v\n%s", err, out)
	}
	out, _ := exec.Command(tool, "verify", "-in", signed).CombinedOutput() // fails on trust, prints digests
	m := calculatedRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("osslsigncode verify printed no calculated digest:\n%s", out)
	}
	b, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	return b, strings.ToLower(string(m[1]))
}

func throwawayCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "uki test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certPath, keyPath
}

func TestAuthenticode_matches_osslsigncode(t *testing.T) {
	stub := readStub(t)
	uki, err := Build(stub, testParts().Sections())
	if err != nil {
		t.Fatal(err)
	}
	ukiPath := filepath.Join(t.TempDir(), "uki.efi")
	if err := os.WriteFile(ukiPath, uki, 0o644); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"stub": DefaultStub, "ipxe": "/usr/lib/ipxe/ipxe.efi", "uki": ukiPath}
	if k, _ := filepath.Glob(kernelGlob); len(k) > 0 {
		files["debian_kernel_signed"] = k[0]
	}
	for name, path := range files {
		t.Run(name, func(t *testing.T) {
			orig, err := os.ReadFile(path)
			if err != nil {
				testenv.Unavailable(t, "%s: %v", path, err)
			}
			signed, want := osslDigest(t, path)
			got, err := Authenticode(signed)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got[:]) != want {
				t.Errorf("signed file: Authenticode %x, osslsigncode %s", got, want)
			}
			// Unsigned and signed files hash alike when signing added no padding.
			if len(orig)%8 == 0 {
				got, err := Authenticode(orig)
				if err != nil {
					t.Fatal(err)
				}
				if hex.EncodeToString(got[:]) != want {
					t.Errorf("original file: Authenticode %x, osslsigncode %s", got, want)
				}
			}
		})
	}
}

func TestAuthenticode_uki_is_8_byte_aligned(t *testing.T) {
	// Firmware hashes an unsigned image as is and signing tools pad it to
	// 8 bytes first; a UKI whose length is a multiple of the file alignment
	// has one digest either way.
	uki, err := Build(readStub(t), testParts().Sections())
	if err != nil {
		t.Fatal(err)
	}
	if len(uki)%8 != 0 {
		t.Fatalf("UKI of %d bytes", len(uki))
	}
}

func TestAuthenticode_changes_with_content(t *testing.T) {
	stub := readStub(t)
	p := testParts()
	a, _ := Build(stub, p.Sections())
	p.Initrd = bytes.Clone(p.Initrd)
	p.Initrd[100] ^= 1
	b, _ := Build(stub, p.Sections())
	da, err := Authenticode(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := Authenticode(b)
	if err != nil {
		t.Fatal(err)
	}
	if da == db {
		t.Fatal("one initrd byte changed, Authenticode digest did not")
	}
}
