//go:build cgo

package tpmtest

import (
	"errors"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpmutil"
)

// simMu is held while a simulator is open: the simulator is a process-wide
// singleton (C globals), so this is the one piece of package state.
var simMu sync.Mutex

// Sim is an open simulator. It implements transport.TPMCloser.
type Sim struct {
	sim    *simulator.Simulator
	closed bool
}

// Simulator opens a freshly manufactured simulator (a new TPM identity)
// and closes it in t.Cleanup. It fails the test if a simulator is already
// open in this process.
func Simulator(t testing.TB) transport.TPMCloser {
	return OpenSim(t)
}

// OpenSim is Simulator returning the concrete type, for Reboot and
// ManufactureReset.
func OpenSim(t testing.TB) *Sim {
	return open(t, simulator.Get)
}

// SimulatorWithSeed opens a simulator whose hierarchy seeds derive from
// seed, so the same seed always gives the same EK. Insecure; tests only.
func SimulatorWithSeed(t testing.TB, seed int64) *Sim {
	return open(t, func() (*simulator.Simulator, error) { return simulator.GetWithFixedSeedInsecure(seed) })
}

func open(t testing.TB, get func() (*simulator.Simulator, error)) *Sim {
	t.Helper()
	if !simMu.TryLock() {
		t.Fatalf("tpmtest: a simulator is already open in this process (nested use, or t.Parallel in a simulator test)")
	}
	sim, err := get()
	if err != nil {
		simMu.Unlock()
		t.Fatalf("simulator: %v", err)
	}
	s := &Sim{sim: sim}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	return s
}

// Send implements transport.TPM.
func (s *Sim) Send(cmd []byte) ([]byte, error) {
	if s.closed {
		return nil, simulator.ErrUsingClosedSimulator
	}
	return tpmutil.RunCommandRaw(s.sim, cmd)
}

// Close shuts the simulator down; closing twice is a no-op.
func (s *Sim) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	defer simMu.Unlock()
	return s.sim.Close()
}

// Reboot simulates a machine reboot: PCRs return to their initial values,
// the reset count increases, seeds and NV are kept (same identity).
func (s *Sim) Reboot() error {
	if s.closed {
		return errors.New("tpmtest: simulator is closed")
	}
	return s.sim.Reset()
}

// ManufactureReset wipes the TPM and gives it new seeds: a new identity.
func (s *Sim) ManufactureReset() error {
	if s.closed {
		return errors.New("tpmtest: simulator is closed")
	}
	return s.sim.ManufactureReset()
}
