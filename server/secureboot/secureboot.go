// Package secureboot keeps the owner key that signs the EFI images sealroot
// serves (the UKI, iPXE), so machines boot with UEFI Secure Boot on, and
// writes what a site enrolls to trust it.
//
// # Files
//
// Init writes, in a directory of mode 0700 (normally <state-dir>/secureboot):
//
//	owner.key  RSA-2048 private key (PKCS #8 PEM), 0600; never served
//	owner.crt  self-signed certificate (PEM, 10 years, code signing)
//	owner.der  the certificate in DER: enroll as a MOK for Debian's
//	           Microsoft-signed shim (mokutil --import owner.der)
//	owner.esl  the certificate as an EFI_SIGNATURE_LIST: enroll in db from
//	           the firmware setup, or in Setup Mode (efi-updatevar -f
//	           owner.esl db)
//
// RSA-2048 because UEFI firmware verifies Authenticode signatures with
// RSA-2048 and SHA-256 only (UEFI spec, 32.5.3.3). A site that already has
// an enrolled key puts it there as owner.key and owner.crt instead.
//
// # Signing
//
// Sign runs sbsign (Debian's sbsigntool): an Authenticode signature over
// the image's Authenticode hash, so PCR 4 (which measures that hash) and
// sealroot's predictions do not change when an image is signed.
package secureboot

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sealroot/sealroot/internal/atomicfile"
)

// File names in an owner directory.
const (
	KeyFile  = "owner.key"
	CertFile = "owner.crt"
	DERFile  = "owner.der"
	ESLFile  = "owner.esl"
)

// Validity of the owner certificate; backdate tolerates clock skew.
const (
	Validity = 10 * 365 * 24 * time.Hour
	backdate = time.Hour
)

// OwnerGUID is the SignatureOwner of sealroot's db entry (EFI_SIGNATURE_DATA),
// so a site can tell it apart in its db: 7c5a5ec0-2d0b-4b0e-9a2f-5ea1a0c0b001.
const OwnerGUID = "7c5a5ec0-2d0b-4b0e-9a2f-5ea1a0c0b001"

// ErrExists is returned by Init when the directory already holds an owner
// key.
var ErrExists = errors.New("a Secure Boot owner key already exists")

// Init creates the owner key, its certificate and the enrollment files in
// dir. It refuses to replace an existing key unless force: machines trust
// the old one until the site enrolls the new one.
func Init(dir, commonName string, force bool) error {
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil && !force {
		return fmt.Errorf("%w in %s", ErrExists, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secureboot init: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("secureboot init: %w", err)
	}
	der, err := selfSigned(key, commonName, time.Now())
	if err != nil {
		return fmt.Errorf("secureboot init: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("secureboot init: %w", err)
	}
	esl, err := SignatureList(der)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600},
		{CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
		{DERFile, der, 0o644},
		{ESLFile, esl, 0o644},
	}
	for _, f := range files {
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("secureboot init: %w", err)
		}
	}
	return nil
}

func selfSigned(key *rsa.PrivateKey, cn string, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
}

// efiCertX509GUID is EFI_CERT_X509_GUID, a5c059a1-94e4-4aa7-87b5-ab155c2bf072.
const efiCertX509GUID = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"

// SignatureList encodes a DER certificate as an EFI_SIGNATURE_LIST of one
// EFI_SIGNATURE_DATA owned by OwnerGUID (UEFI spec, 32.4.1): SignatureType
// EFI_CERT_X509_GUID, SignatureListSize, SignatureHeaderSize 0,
// SignatureSize, then the owner GUID and the certificate.
func SignatureList(certDER []byte) ([]byte, error) {
	if _, err := x509.ParseCertificate(certDER); err != nil {
		return nil, fmt.Errorf("signature list: %w", err)
	}
	typ, _ := guidBytes(efiCertX509GUID)
	owner, _ := guidBytes(OwnerGUID)
	sigSize := 16 + len(certDER)
	var b bytes.Buffer
	b.Write(typ)
	binary.Write(&b, binary.LittleEndian, uint32(28+sigSize))
	binary.Write(&b, binary.LittleEndian, uint32(0))
	binary.Write(&b, binary.LittleEndian, uint32(sigSize))
	b.Write(owner)
	b.Write(certDER)
	return b.Bytes(), nil
}

// guidBytes encodes a GUID string in EFI's in-memory byte order: the first
// three fields little endian, the last two as written.
func guidBytes(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || len(s) != 36 {
		return nil, fmt.Errorf("GUID %q: want 8-4-4-4-12 hex digits", s)
	}
	slices.Reverse(b[0:4])
	slices.Reverse(b[4:6])
	slices.Reverse(b[6:8])
	return b, nil
}

// Sign writes to out the EFI image in signed with the owner key in dir,
// by sbsign. in and out may be the same file.
func Sign(ctx context.Context, dir, in, out string) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".signing-*")
	if err != nil {
		return fmt.Errorf("secureboot sign: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.CommandContext(ctx, "sbsign",
		"--key", filepath.Join(dir, KeyFile), "--cert", filepath.Join(dir, CertFile),
		"--output", tmp.Name(), in)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("secureboot sign %s: sbsign: %w: %s", in, err, bytes.TrimSpace(b))
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("secureboot sign: %w", err)
	}
	return nil
}

// Fingerprint is the SHA-256 of the owner certificate in dir, as operators
// compare it with what their firmware shows.
func Fingerprint(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, DERFile))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%x", sum), nil
}

// Initialized reports whether dir holds an owner key and certificate, so
// the images sealroot serves are signed.
func Initialized(dir string) bool {
	for _, name := range []string{KeyFile, CertFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return false
		}
	}
	return true
}

// SignedIPXE is the file, in an owner directory, of the signed copy of
// the iPXE EFI binary the server serves when Secure Boot is initialized.
const SignedIPXE = "ipxe.efi"

// SignCopy keeps out a copy of the EFI image in signed with the owner key
// in dir: it signs again when out is missing or older than in, the key or
// the certificate, and otherwise does nothing.
func SignCopy(ctx context.Context, dir, in, out string) error {
	if fresh, err := newerThan(out, in, filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)); err != nil || fresh {
		return err
	}
	return Sign(ctx, dir, in, out)
}

// newerThan reports whether path exists and was modified after every
// one of inputs.
func newerThan(path string, inputs ...string) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("secureboot sign: %w", err)
	}
	for _, in := range inputs {
		ii, err := os.Stat(in)
		if err != nil {
			return false, fmt.Errorf("secureboot sign: %w", err)
		}
		if !fi.ModTime().After(ii.ModTime()) {
			return false, nil
		}
	}
	return true, nil
}
