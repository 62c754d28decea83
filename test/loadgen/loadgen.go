// Package loadgen simulates many agents against a sealroot server: each has
// a software TPM (package softtpm) that went through a synthetic measured
// boot (package fakeboot). It serves benchmarks and boot-storm load tests
// only; every correctness test of TPM behaviour uses a real TPM (the
// simulator or swtpm).
package loadgen

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/test/softtpm"
	"github.com/sealroot/sealroot/wire"
)

// Agent is one simulated machine.
type Agent struct {
	TPM  *softtpm.TPM
	Boot *fakeboot.Boot
}

// NewAgent creates a software TPM and applies a measured boot of spec.
func NewAgent(rand io.Reader, spec fakeboot.Spec) (*Agent, error) {
	t, err := softtpm.New(rand)
	if err != nil {
		return nil, fmt.Errorf("softtpm: %w", err)
	}
	b, err := fakeboot.Build(spec)
	if err != nil {
		return nil, err
	}
	if err := b.Apply(t); err != nil {
		return nil, err
	}
	return &Agent{TPM: t, Boot: b}, nil
}

// DefaultSpec is a plausible UEFI network boot.
func DefaultSpec() fakeboot.Spec {
	return fakeboot.Spec{
		Firmware: "OVMF 2022.11",
		Loader:   []byte("ipxe.efi"),
		Kernel:   []byte("vmlinuz-6.1.0-56-amd64"),
		Initrd:   []byte("initramfs.cpio.gz"),
		Cmdline:  "console=ttyS0 panic=10",
	}
}

var _ agentattest.Device = (*Agent)(nil)

func (a *Agent) Identity(context.Context) (*agentattest.Identity, error) {
	return &agentattest.Identity{EKPublic: a.TPM.EKPublic(), AKPublic: a.TPM.AKPublic()}, nil
}

func (a *Agent) ActivateCredential(_ context.Context, blob, encSecret []byte) ([]byte, error) {
	return a.TPM.ActivateCredential(blob, encSecret)
}

func (a *Agent) ReadPCRs(_ context.Context, pcrs []int) ([]wire.PCR, error) {
	return a.TPM.PCRs(pcrs), nil
}

func (a *Agent) Quote(_ context.Context, qualifying []byte, pcrs []int) ([]byte, []byte, error) {
	return a.TPM.Quote(qualifying, pcrs)
}

func (a *Agent) EventLog() ([]byte, error) { return a.Boot.Log, nil }

func (a *Agent) Unseal(_ context.Context, c *wire.Credential) ([]byte, error) {
	return a.TPM.UnsealCredential(c)
}

// Reboot resets the TPM and measures the same boot again, as a machine
// that powers on anew: PCR 15, extended after the last unseal, is zero
// again and the reset count grows.
func (a *Agent) Reboot() error {
	a.TPM.Reboot()
	return a.Boot.Apply(a.TPM)
}

func (a *Agent) ExtendPCR(_ context.Context, pcr int, data []byte) error {
	sum := sha256.Sum256(data)
	return a.TPM.ExtendPCR(pcr, sum[:])
}
