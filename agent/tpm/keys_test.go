//go:build cgo

package tpm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/ektemplate"
	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/server/seal"
	"github.com/sealroot/sealroot/wire"
)

func TestLoadKeys(t *testing.T) {
	ctx := context.Background()
	tp, _ := openSim(t)
	k, err := tp.LoadKeys(ctx)
	if err != nil {
		t.Fatalf("LoadKeys() = %v", err)
	}
	if _, err := evidence.ParseEK(k.EKPublic); err != nil {
		t.Errorf("ParseEK(EKPublic) = %v", err)
	}
	if _, err := evidence.ParseAK(k.AKPublic); err != nil {
		t.Errorf("ParseAK(AKPublic) = %v", err)
	}
	if k.EKCert != nil {
		t.Errorf("EKCert = %d bytes, want nil (the simulator has no EK certificate)", len(k.EKCert))
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	// The simulator holds three objects: the keys must be flushed first.
	again, err := tp.LoadKeys(ctx)
	if err != nil {
		t.Fatalf("second LoadKeys() = %v", err)
	}
	defer again.Close()
	if !bytes.Equal(again.EKPublic, k.EKPublic) || !bytes.Equal(again.AKPublic, k.AKPublic) {
		t.Errorf("second LoadKeys() gave different keys, want the same EK and AK every time")
	}
}

func TestKeysCloseTwice(t *testing.T) {
	tp, _ := openSim(t)
	k, err := tp.LoadKeys(context.Background())
	if err != nil {
		t.Fatalf("LoadKeys() = %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("first Close() = %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	_, _, err = tp.Quote(context.Background(), k, nil, []int{0})
	if !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Quote after Close = %v, want ErrClosed", err)
	}
}

func TestDifferentTPMsDifferentKeys(t *testing.T) {
	first, _ := otherTPMKeys(t)
	tp, _ := openSim(t)
	second := loadKeys(t, tp).EKPublic
	if bytes.Equal(first, second) {
		t.Fatalf("two manufactured simulators have the same EK")
	}
}

// TestEKCert writes a certificate-sized blob at the RSA EK certificate index
// through the platform hierarchy, as a manufacturer does, and reads it back
// in chunks.
func TestEKCert(t *testing.T) {
	tp, sim := openSim(t)
	cert := bytes.Repeat([]byte("0123456789abcdef"), 83) // 1328 bytes, three chunks
	writeNV(t, sim, ektemplate.RSA2048.CertIndex, cert)
	k := loadKeys(t, tp)
	if !bytes.Equal(k.EKCert, cert) {
		t.Errorf("EKCert = %d bytes, want the %d written", len(k.EKCert), len(cert))
	}
	if k.EKKind.Name != "rsa2048" {
		t.Errorf("EKKind = %q, want rsa2048", k.EKKind.Name)
	}
}

// TestECCOnlyEKCert: a TPM whose only certificate is for the ECC P-256 EK
// uses that EK, and the server accepts its public area.
func TestECCOnlyEKCert(t *testing.T) {
	tp, sim := openSim(t)
	cert := []byte("ecc certificate")
	writeNV(t, sim, ektemplate.ECCP256.CertIndex, cert)
	k := loadKeys(t, tp)
	if k.EKKind.Name != "p256" || !bytes.Equal(k.EKCert, cert) {
		t.Fatalf("EKKind, EKCert = %q, %q; want p256 and the ECC certificate", k.EKKind.Name, k.EKCert)
	}
	ek, err := evidence.ParseEK(k.EKPublic)
	if err != nil {
		t.Fatalf("ParseEK(ECC EK) = %v", err)
	}
	if ek.Type != tpm2.TPMAlgECC {
		t.Errorf("EK type = %v, want ECC", ek.Type)
	}
	if kind, ok := ektemplate.Of(ek); !ok || kind.Name != "p256" {
		t.Errorf("ektemplate.Of(EK) = %q, %v; want p256", kind.Name, ok)
	}
}

// TestBothEKCerts: with both certificates the RSA EK is preferred.
func TestBothEKCerts(t *testing.T) {
	tp, sim := openSim(t)
	writeNV(t, sim, ektemplate.ECCP256.CertIndex, []byte("ecc"))
	writeNV(t, sim, ektemplate.RSA2048.CertIndex, []byte("rsa"))
	k := loadKeys(t, tp)
	if k.EKKind.Name != "rsa2048" || string(k.EKCert) != "rsa" {
		t.Errorf("EKKind, EKCert = %q, %q; want rsa2048, rsa", k.EKKind.Name, k.EKCert)
	}
}

// TestEKChain reads the chain range's defined indices in order and nothing
// outside it.
func TestEKChain(t *testing.T) {
	tp, sim := openSim(t)
	writeNV(t, sim, ektemplate.ChainFirst+1, []byte("second"))
	writeNV(t, sim, ektemplate.ChainFirst, []byte("first"))
	writeNV(t, sim, ektemplate.ChainLast+1, []byte("outside"))
	k := loadKeys(t, tp)
	if len(k.EKChain) != 2 || string(k.EKChain[0]) != "first" || string(k.EKChain[1]) != "second" {
		t.Errorf("EKChain = %q, want [first second]", k.EKChain)
	}
}

func writeNV(t *testing.T, sim interface {
	Send([]byte) ([]byte, error)
}, index uint32, data []byte) {
	t.Helper()
	pub := tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(index),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true,
			NoDA: true, PlatformCreate: true,
		},
		DataSize: uint16(len(data)),
	}
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.TPMRHPlatform,
		PublicInfo: tpm2.New2B(pub),
	}.Execute(sim)
	if err != nil {
		t.Fatalf("NVDefineSpace = %v", err)
	}
	pub.Attributes.Written = true
	name, err := tpm2.NVName(&pub)
	if err != nil {
		t.Fatalf("NVName = %v", err)
	}
	for off := 0; off < len(data); off += 512 {
		chunk := data[off:min(off+512, len(data))]
		_, err := tpm2.NVWrite{
			AuthHandle: tpm2.TPMRHPlatform,
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: *name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: chunk},
			Offset:     uint16(off),
		}.Execute(sim)
		if err != nil {
			t.Fatalf("NVWrite at %d = %v", off, err)
		}
	}
}

// TestEKKindsActivateAndUnseal: for each EK kind, a TPM whose only
// certificate is that kind's uses that EK, the server accepts its public
// area, and the server's credential activation (RSA-OAEP or ECDH
// MakeCredential) and sealed import both work with it.
func TestEKKindsActivateAndUnseal(t *testing.T) {
	for _, kind := range ektemplate.Kinds() {
		t.Run(kind.Name, func(t *testing.T) {
			ctx := context.Background()
			tp, sim := openSim(t)
			writeNV(t, sim, kind.CertIndex, []byte("certificate of "+kind.Name))
			k, err := tp.LoadKeys(ctx)
			if kind.Name == "rsa3072" && errors.Is(err, tpm2.TPMRCValue) {
				t.Skip("the go-tpm-tools simulator has no RSA-3072; server/attest TestEKCertKinds/rsa3072_verified covers it on swtpm")
			}
			if err != nil {
				t.Fatalf("LoadKeys = %v", err)
			}
			defer k.Close()
			if k.EKKind.Name != kind.Name {
				t.Fatalf("EKKind = %q, want %q", k.EKKind.Name, kind.Name)
			}
			ek, err := evidence.ParseEK(k.EKPublic)
			if err != nil {
				t.Fatalf("ParseEK = %v", err)
			}
			if got, ok := ektemplate.Of(ek); !ok || got.Name != kind.Name {
				t.Errorf("ektemplate.Of(EK) = %q, %v; want %q", got.Name, ok, kind.Name)
			}
			blob, encSecret, secret, err := evidence.NewActivation(rand.Reader, k.EKPublic, k.AKPublic)
			if err != nil {
				t.Fatalf("NewActivation = %v", err)
			}
			got, err := tp.ActivateCredential(ctx, k, blob, encSecret)
			if err != nil {
				t.Fatalf("ActivateCredential = %v", err)
			}
			if !bytes.Equal(got, secret) {
				t.Errorf("ActivateCredential = %x, want the secret", got)
			}
			aad := wire.CredentialAAD([]byte("exporter"), wire.MachineID(k.EKPublic))
			c := sealToCurrent(t, tp, k.EKPublic, []byte("payload"), aad)
			key, err := tp.Unseal(ctx, k, c)
			if err != nil {
				t.Fatalf("Unseal = %v", err)
			}
			if _, err := seal.OpenPayload(key, c.Ciphertext, aad); err != nil {
				t.Errorf("OpenPayload = %v", err)
			}
		})
	}
}
