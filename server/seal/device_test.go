//go:build cgo

package seal_test

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/sealroot/sealroot/server/seal"
	"github.com/sealroot/sealroot/wire"
)

// TestPolicyDigestMatchesTPM runs TPM2_PolicyPCR in a trial session on the
// simulator and compares the TPM's policy digest with PolicyDigest.
func TestPolicyDigestMatchesTPM(t *testing.T) {
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("simulator.OpenSimulator() = %v", err)
	}
	defer sim.Close()
	indices := []uint{0, 4, 7, 9, 15}
	read, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(indices...),
	}}}}.Execute(sim)
	if err != nil {
		t.Fatalf("PCRRead = %v", err)
	}
	var pcrs []wire.PCR
	for i, d := range read.PCRValues.Digests {
		pcrs = append(pcrs, wire.PCR{Index: int(indices[i]), Digest: d.Buffer})
	}
	sess, closeSess, err := tpm2.PolicySession(sim, tpm2.TPMAlgSHA256, 16, tpm2.Trial())
	if err != nil {
		t.Fatalf("PolicySession = %v", err)
	}
	defer closeSess()
	_, err = tpm2.PolicyPCR{
		PolicySession: sess.Handle(),
		Pcrs:          read.PCRSelectionOut,
	}.Execute(sim)
	if err != nil {
		t.Fatalf("PolicyPCR = %v", err)
	}
	got, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(sim)
	if err != nil {
		t.Fatalf("PolicyGetDigest = %v", err)
	}
	want, err := seal.PolicyDigest(pcrs)
	if err != nil {
		t.Fatalf("PolicyDigest() = %v", err)
	}
	if !bytes.Equal(got.PolicyDigest.Buffer, want) {
		t.Errorf("TPM policy digest %x, PolicyDigest() = %x", got.PolicyDigest.Buffer, want)
	}
}
