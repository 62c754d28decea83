//go:build cgo

package tpm_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/server/attest/evidence"
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

// TestEKCert writes a certificate-sized blob at the EK certificate index
// through the platform hierarchy, as a manufacturer does, and reads it back
// in chunks.
func TestEKCert(t *testing.T) {
	tp, sim := openSim(t)
	cert := bytes.Repeat([]byte("0123456789abcdef"), 83) // 1328 bytes, three chunks
	writeNV(t, sim, tpm.EKCertIndex, cert)
	k := loadKeys(t, tp)
	if !bytes.Equal(k.EKCert, cert) {
		t.Errorf("EKCert = %d bytes, want the %d written", len(k.EKCert), len(cert))
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
