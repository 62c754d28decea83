//go:build cgo

package tpm_test

import (
	"context"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/sealroot/sealroot/agent/tpm"
)

// openSim opens the process-global TPM simulator, freshly manufactured
// (new seeds, so a new EK, and reset PCRs), and closes it at cleanup.
func openSim(t testing.TB) (*tpm.TPM, transport.TPM) {
	t.Helper()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("simulator.OpenSimulator() = %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return tpm.New(sim), sim
}

// otherTPMKeys returns the EK and AK public areas of another TPM: it opens
// the simulator, which must be closed, freshly manufactured, and closes it.
func otherTPMKeys(t testing.TB) (ekPublic, akPublic []byte) {
	t.Helper()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("simulator.OpenSimulator() = %v", err)
	}
	defer sim.Close()
	k, err := tpm.New(sim).LoadKeys(context.Background())
	if err != nil {
		t.Fatalf("LoadKeys() = %v", err)
	}
	defer k.Close()
	return k.EKPublic, k.AKPublic
}

// loadKeys loads the EK and AK and flushes them at cleanup.
func loadKeys(t testing.TB, tp *tpm.TPM) *tpm.Keys {
	t.Helper()
	k, err := tp.LoadKeys(context.Background())
	if err != nil {
		t.Fatalf("LoadKeys() = %v", err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("Keys.Close() = %v", err)
		}
	})
	return k
}
