//go:build cgo

package tpm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/wire"
)

func TestActivateCredential(t *testing.T) {
	_, otherAK := otherTPMKeys(t)
	ctx := context.Background()
	tp, _ := openSim(t)
	k := loadKeys(t, tp)

	blob, encSecret, secret, err := evidence.NewActivation(rand.Reader, k.EKPublic, k.AKPublic)
	if err != nil {
		t.Fatalf("NewActivation() = %v", err)
	}
	got, err := tp.ActivateCredential(ctx, k, blob, encSecret)
	if err != nil {
		t.Fatalf("ActivateCredential() = %v", err)
	}
	data := wire.ActivationProofData([]byte("nonce"), []byte("exporter"), wire.MachineID(k.EKPublic))
	if err := evidence.VerifyActivationProof(secret, evidence.ActivationProof(got, data), data); err != nil {
		t.Errorf("VerifyActivationProof(activated secret) = %v", err)
	}

	// The server bound the credential to another AK's name (an AK swap):
	// the TPM must refuse to release it for this AK.
	blob, encSecret, _, err = evidence.NewActivation(rand.Reader, k.EKPublic, otherAK)
	if err != nil {
		t.Fatalf("NewActivation(other AK) = %v", err)
	}
	_, err = tp.ActivateCredential(ctx, k, blob, encSecret)
	if !errors.Is(err, tpm2.TPMRCIntegrity) {
		t.Errorf("ActivateCredential(credential for another AK) = %v, want TPM_RC_INTEGRITY", err)
	}
}

func TestQuoteVerifies(t *testing.T) {
	ctx := context.Background()
	tp, _ := openSim(t)
	k := loadKeys(t, tp)
	pcrs := []int{9, 0, 1, 2, 3, 4, 5, 6, 7, 11, 12, 15}
	if err := tp.ExtendPCR(ctx, 9, []byte("initrd")); err != nil {
		t.Fatalf("ExtendPCR() = %v", err)
	}
	extra := wire.QualifyingData([]byte("nonce"), []byte("exporter"), wire.MachineID(k.EKPublic))
	quote, sig, err := tp.Quote(ctx, k, extra, pcrs)
	if err != nil {
		t.Fatalf("Quote() = %v", err)
	}
	values, err := tp.ReadPCRs(ctx, pcrs)
	if err != nil {
		t.Fatalf("ReadPCRs() = %v", err)
	}
	if _, err := evidence.VerifyQuote(k.AKPublic, quote, sig, extra, values); err != nil {
		t.Fatalf("VerifyQuote() = %v", err)
	}
}

func TestReadPCRs(t *testing.T) {
	ctx := context.Background()
	tp, _ := openSim(t)
	if err := tp.ExtendPCR(ctx, 16, []byte("data")); err != nil {
		t.Fatalf("ExtendPCR() = %v", err)
	}
	pcrs := []int{23, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	got, err := tp.ReadPCRs(ctx, pcrs)
	if err != nil {
		t.Fatalf("ReadPCRs() = %v", err)
	}
	if len(got) != len(pcrs) {
		t.Fatalf("ReadPCRs(%d PCRs) returned %d", len(pcrs), len(got))
	}
	for i, p := range got {
		if i > 0 && got[i-1].Index >= p.Index {
			t.Errorf("ReadPCRs() not sorted by index: %d after %d", p.Index, got[i-1].Index)
		}
		if len(p.Digest) != sha256.Size {
			t.Errorf("PCR %d value of %d bytes", p.Index, len(p.Digest))
		}
	}
	data := sha256.Sum256([]byte("data"))
	want := sha256.Sum256(append(make([]byte, sha256.Size), data[:]...))
	if p := got[len(got)-2]; p.Index != 16 || !bytes.Equal(p.Digest, want[:]) {
		t.Errorf("PCR %d = %x, want PCR 16 = %x", p.Index, p.Digest, want)
	}
}

func TestBadPCRIndices(t *testing.T) {
	ctx := context.Background()
	tp, _ := openSim(t)
	for _, tc := range []struct {
		name string
		pcrs []int
	}{
		{"empty", nil},
		{"negative", []int{-1}},
		{"over_23", []int{24}},
		{"repeated", []int{1, 2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tp.ReadPCRs(ctx, tc.pcrs); !errors.Is(err, tpm.ErrPCR) {
				t.Errorf("ReadPCRs(%v) = %v, want ErrPCR", tc.pcrs, err)
			}
		})
	}
	if err := tp.ExtendPCR(ctx, 24, nil); !errors.Is(err, tpm.ErrPCR) {
		t.Errorf("ExtendPCR(24) = %v, want ErrPCR", err)
	}
}

func TestRandom(t *testing.T) {
	ctx := context.Background()
	tp, _ := openSim(t)
	for _, n := range []int{0, 1, 32, 33, 1000} {
		b, err := tp.Random(ctx, n)
		if err != nil {
			t.Fatalf("Random(%d) = %v", n, err)
		}
		if len(b) != n {
			t.Errorf("Random(%d) returned %d bytes", n, len(b))
		}
	}
	a, _ := tp.Random(ctx, 32)
	b, _ := tp.Random(ctx, 32)
	if bytes.Equal(a, b) {
		t.Errorf("Random(32) returned the same bytes twice")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tp.Random(cctx, 8); !errors.Is(err, context.Canceled) {
		t.Errorf("Random(canceled context) = %v, want context.Canceled", err)
	}
}
