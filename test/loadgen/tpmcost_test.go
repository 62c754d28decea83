package loadgen_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/test/loadgen"
)

// TestTPMCPUPerAttestation checks that the software TPM's share of an
// attestation runs each of its steps without error, the unseal of a
// sealed credential included, and leaves the agents' PCRs as they were.
func TestTPMCPUPerAttestation(t *testing.T) {
	agents, err := loadgen.NewAgents(context.Background(), rand.Reader, 2, loadgen.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	before := agents[0].TPM.PCRs(attest.DefaultPCRs)
	if _, err := loadgen.TPMCPUPerAttestation(context.Background(), rand.Reader, agents, attest.DefaultPCRs, 4); err != nil {
		t.Fatal(err)
	}
	after := agents[0].TPM.PCRs(attest.DefaultPCRs)
	for i := range before {
		if string(before[i].Digest) != string(after[i].Digest) {
			t.Errorf("PCR %d changed", before[i].Index)
		}
	}
}
