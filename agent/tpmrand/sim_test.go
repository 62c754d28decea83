//go:build cgo

package tpmrand

import (
	"context"
	"testing"

	"github.com/google/go-tpm/tpm2/transport/simulator"
)

// TestRandomSimulator runs the hand-encoded command against the TPM
// reference simulator.
func TestRandomSimulator(t *testing.T) {
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("simulator.OpenSimulator() = %v", err)
	}
	defer sim.Close()
	b, err := Random(context.Background(), sim, 200)
	if err != nil || len(b) != 200 {
		t.Fatalf("Random(200) = %d bytes, %v", len(b), err)
	}
}
