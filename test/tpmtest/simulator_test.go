//go:build cgo

package tpmtest

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/test/fakeboot"
)

func ekPublic(t *testing.T, tpm transport.TPM) []byte {
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

func TestSimulatorIdentity(t *testing.T) {
	first := func() []byte {
		tpm := Simulator(t)
		defer tpm.Close()
		return ekPublic(t, tpm)
	}()
	sim := OpenSim(t)
	second := ekPublic(t, sim)
	if bytes.Equal(first, second) {
		t.Errorf("two Simulator calls gave the same EK")
	}
	if err := sim.Reboot(); err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	if got := ekPublic(t, sim); !bytes.Equal(got, second) {
		t.Errorf("EK changed across Reboot")
	}
	if err := sim.ManufactureReset(); err != nil {
		t.Fatalf("ManufactureReset: %v", err)
	}
	if got := ekPublic(t, sim); bytes.Equal(got, second) {
		t.Errorf("EK unchanged after ManufactureReset")
	}
	sim.Close()

	seeded := func() []byte {
		s := SimulatorWithSeed(t, 42)
		defer s.Close()
		return ekPublic(t, s)
	}
	if a, b := seeded(), seeded(); !bytes.Equal(a, b) {
		t.Errorf("SimulatorWithSeed(42) gave two different EKs")
	}
}

func TestSimulatorNested(t *testing.T) {
	Simulator(t)
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { recover() }()
		Simulator(ft)
	}()
	if !ft.failed {
		t.Errorf("second Simulator while one is open did not fail")
	}
}

// fatalRecorder records Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Fatalf(string, ...any) { f.failed = true; panic("fatal") }
func (f *fatalRecorder) Helper()               {}

func TestSimulatorMeasuredBoot(t *testing.T) {
	sim := OpenSim(t)
	boot, err := fakeboot.Build(fakeboot.Spec{Kernel: []byte("kernel"), Initrd: []byte("initrd"), Cmdline: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	if err := boot.Apply(ExtendDigest(sim)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	idx := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 15}
	pcrs, err := ReadPCRs(sim, idx)
	if err != nil {
		t.Fatalf("ReadPCRs: %v", err)
	}
	want := boot.PCRs()
	for _, p := range pcrs {
		if !bytes.Equal(p.Digest, want[p.Index]) {
			t.Errorf("PCR %d = %x, want %x", p.Index, p.Digest, want[p.Index])
		}
	}
	if _, err := eventlog.Verify(boot.Log, pcrs); err != nil {
		t.Errorf("eventlog.Verify on simulator PCRs: %v", err)
	}
	if err := sim.Reboot(); err != nil {
		t.Fatal(err)
	}
	after, err := ReadPCRs(sim, []int{4})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after[0].Digest, make([]byte, 32)) {
		t.Errorf("PCR 4 after Reboot = %x, want zero", after[0].Digest)
	}
}
