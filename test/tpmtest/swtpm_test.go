package tpmtest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/test/fakeboot"
)

const rsaEKCertIndex = 0x01C00002

func readNV(t *testing.T, tpm transport.TPM, index tpm2.TPMHandle) []byte {
	t.Helper()
	pub, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tpm)
	if err != nil {
		t.Fatalf("tpm2.NVReadPublic(%#x): %v", index, err)
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for off := 0; off < int(nv.DataSize); off += 512 {
		n := min(512, int(nv.DataSize)-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: index, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: pub.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(tpm)
		if err != nil {
			t.Fatalf("tpm2.NVRead(%#x, %d): %v", index, off, err)
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out
}

func TestSWTPMEKCert(t *testing.T) {
	s := SWTPM(t, SWTPMOptions{EKCert: true})
	if len(s.CACerts()) != 2 {
		t.Fatalf("CACerts() = %d certificates, want root and intermediate", len(s.CACerts()))
	}
	cert, err := x509.ParseCertificate(readNV(t, s.TPM, rsaEKCertIndex))
	if err != nil {
		t.Fatalf("parse EK certificate: %v", err)
	}
	// EK certificates carry a critical SAN holding only a directoryName.
	san := asn1.ObjectIdentifier{2, 5, 29, 17}
	var unhandled []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(san) {
			unhandled = append(unhandled, oid)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(s.CACerts()[0])
	inter.AddCert(s.CACerts()[1])
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("EK certificate does not verify with CACerts: %v", err)
	}

	ek, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublicOf(t, s.TPM))
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm2.Pub(*ek)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(*rsa.PublicKey).Equal(cert.PublicKey) {
		t.Errorf("EK certificate key differs from CreatePrimary(RSAEKTemplate)")
	}
}

func ekPublicOf(t *testing.T, tpm transport.TPM) []byte {
	t.Helper()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.RSAEKTemplate),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("tpm2.CreatePrimary: %v", err)
	}
	if _, err := (tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(tpm); err != nil {
		t.Fatalf("tpm2.FlushContext: %v", err)
	}
	return rsp.OutPublic.Bytes()
}

func TestSWTPMMeasuredBootAndRestart(t *testing.T) {
	s := SWTPM(t, SWTPMOptions{})
	if s.CACerts() != nil {
		t.Errorf("CACerts() without EKCert = %v, want nil", s.CACerts())
	}
	ek := ekPublicOf(t, s.TPM)
	boot, err := fakeboot.Build(fakeboot.Spec{Kernel: []byte("kernel"), Initrd: []byte("initrd"), Cmdline: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	if err := boot.Apply(ExtendDigest(s.TPM)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	idx := []int{0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 14, 15}
	pcrs, err := ReadPCRs(s.TPM, idx)
	if err != nil {
		t.Fatalf("ReadPCRs: %v", err)
	}
	if _, err := eventlog.Verify(boot.Log, pcrs); err != nil {
		t.Errorf("eventlog.Verify on swtpm PCRs: %v", err)
	}

	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got := ekPublicOf(t, s.TPM); !bytes.Equal(got, ek) {
		t.Errorf("EK changed across Restart")
	}
	after, err := ReadPCRs(s.TPM, []int{4})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after[0].Digest, make([]byte, 32)) {
		t.Errorf("PCR 4 after Restart = %x, want zero", after[0].Digest)
	}
}
