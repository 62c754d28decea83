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
	"github.com/sealroot/sealroot/server/seal"
	"github.com/sealroot/sealroot/wire"
)

// sealedPCRs are the PCRs a credential is sealed to in these tests.
var sealedPCRs = []int{0, 2, 4, 7, 9, 11}

// sealToCurrent seals payload to k's EK and the TPM's current values of
// sealedPCRs plus PCR 15 = zero, as the server does after a good quote.
func sealToCurrent(t *testing.T, tp *tpm.TPM, ekPublic, payload, aad []byte) *wire.Credential {
	t.Helper()
	pcrs, err := tp.ReadPCRs(context.Background(), sealedPCRs)
	if err != nil {
		t.Fatalf("ReadPCRs() = %v", err)
	}
	pcrs = append(pcrs, wire.PCR{Index: 15, Digest: make([]byte, 32)})
	c, err := seal.Seal(rand.Reader, ekPublic, pcrs, payload, aad)
	if err != nil {
		t.Fatalf("Seal() = %v", err)
	}
	return c
}

func TestUnsealRoundTrip(t *testing.T) {
	ctx := context.Background()
	tp, _ := openSim(t)
	k := loadKeys(t, tp)
	if err := tp.ExtendPCR(ctx, 9, []byte("initrd")); err != nil {
		t.Fatalf("ExtendPCR() = %v", err)
	}
	payload := []byte(`{"machine_id":"m"}`)
	aad := wire.CredentialAAD([]byte("exporter"), wire.MachineID(k.EKPublic))
	c := sealToCurrent(t, tp, k.EKPublic, payload, aad)

	key, err := tp.Unseal(ctx, k, c)
	if err != nil {
		t.Fatalf("Unseal() = %v", err)
	}
	if len(key) != seal.KeySize {
		t.Fatalf("Unseal() returned %d bytes, want %d", len(key), seal.KeySize)
	}
	got, err := seal.OpenPayload(key, c.Ciphertext, aad)
	if err != nil {
		t.Fatalf("OpenPayload() = %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("OpenPayload() = %q, want %q", got, payload)
	}
	if _, err := seal.OpenPayload(key, c.Ciphertext, wire.CredentialAAD([]byte("other session"), "m")); !errors.Is(err, seal.ErrDecrypt) {
		t.Errorf("OpenPayload(other aad) = %v, want ErrDecrypt", err)
	}
	// Unseal flushed everything it loaded: it works again with the three
	// object slots of the simulator.
	if _, err := tp.Unseal(ctx, k, c); err != nil {
		t.Errorf("second Unseal() = %v", err)
	}
}

func TestUnsealRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		pcr  int
	}{
		{name: "pcr_9_changed_after_seal", pcr: 9},
		{name: "pcr_15_extended_by_agent", pcr: 15},
		{name: "pcr_0_changed_after_seal", pcr: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			tp, _ := openSim(t)
			k := loadKeys(t, tp)
			c := sealToCurrent(t, tp, k.EKPublic, []byte("payload"), nil)
			if err := tp.ExtendPCR(ctx, tc.pcr, []byte("something else")); err != nil {
				t.Fatalf("ExtendPCR(%d) = %v", tc.pcr, err)
			}
			_, err := tp.Unseal(ctx, k, c)
			if !errors.Is(err, tpm.ErrPolicyFail) || !errors.Is(err, tpm2.TPMRCPolicyFail) {
				t.Errorf("Unseal() after extending PCR %d = %v, want ErrPolicyFail and TPM_RC_POLICY_FAIL", tc.pcr, err)
			}
		})
	}
}

// TestUnsealAfterPCR15 checks that once the agent extended PCR 15, even a
// credential sealed afterwards with the current values of the other PCRs
// and PCR 15 = zero does not unseal: the booted OS cannot reuse it.
func TestUnsealAfterPCR15(t *testing.T) {
	ctx := context.Background()
	tp, _ := openSim(t)
	k := loadKeys(t, tp)
	if err := tp.ExtendPCR(ctx, 15, []byte("sealroot: credential opened")); err != nil {
		t.Fatalf("ExtendPCR(15) = %v", err)
	}
	c := sealToCurrent(t, tp, k.EKPublic, []byte("payload"), nil)
	if _, err := tp.Unseal(ctx, k, c); !errors.Is(err, tpm.ErrPolicyFail) {
		t.Errorf("Unseal() after PCR 15 extended = %v, want ErrPolicyFail", err)
	}
}

func TestUnsealOtherTPM(t *testing.T) {
	otherEK, _ := otherTPMKeys(t)
	ctx := context.Background()
	tp, _ := openSim(t)
	k := loadKeys(t, tp)
	c := sealToCurrent(t, tp, otherEK, []byte("payload"), nil)
	_, err := tp.Unseal(ctx, k, c)
	// The TPM's response code varies with what the wrong RSA key decrypts
	// the seed to (TPM_RC_VALUE, TPM_RC_SIZE, ...).
	var rc tpm2.TPMRC
	if !errors.Is(err, tpm.ErrImport) || !errors.As(err, &rc) {
		t.Errorf("Unseal(credential sealed to another TPM's EK) = %v, want ErrImport from the TPM", err)
	}
}

func TestUnsealRejectsMalformed(t *testing.T) {
	ctx := context.Background()
	tp, _ := openSim(t)
	k := loadKeys(t, tp)
	good := sealToCurrent(t, tp, k.EKPublic, []byte("payload"), nil)
	for _, tc := range []struct {
		name string
		mod  func(c wire.Credential) *wire.Credential
		want error
	}{
		{"nil", func(wire.Credential) *wire.Credential { return nil }, nil},
		{"oversized_public", func(c wire.Credential) *wire.Credential { c.Public = make([]byte, 4096); return &c }, nil},
		{"no_pcrs", func(c wire.Credential) *wire.Credential { c.PCRs = nil; return &c }, tpm.ErrPCR},
		{"pcr_out_of_range", func(c wire.Credential) *wire.Credential { c.PCRs = []int{99}; return &c }, tpm.ErrPCR},
		{"policy_pcrs_changed", func(c wire.Credential) *wire.Credential { c.PCRs = []int{0, 2}; return &c }, tpm.ErrPolicyFail},
		{"public_tampered", func(c wire.Credential) *wire.Credential {
			c.Public = bytes.Clone(c.Public)
			c.Public[len(c.Public)-1] ^= 1
			return &c
		}, tpm.ErrImport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tp.Unseal(ctx, k, tc.mod(*good))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("Unseal() = %v, want %v", err, tc.want)
			}
		})
	}
	// Nothing leaked: the good credential still unseals.
	if _, err := tp.Unseal(ctx, k, good); err != nil {
		t.Errorf("Unseal(good credential) after failures = %v", err)
	}
}
