package attest

import (
	"context"

	"github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/wire"
)

// TPMDevice is a Device backed by a real TPM through agent/tpm.
type TPMDevice struct {
	TPM  *tpm.TPM
	Keys *tpm.Keys // from TPM.LoadKeys; the caller closes them
	// ReadEventLog returns the firmware event log (securityfs in the agent).
	ReadEventLog func() ([]byte, error)
}

var _ Device = (*TPMDevice)(nil)

func (d *TPMDevice) Identity(ctx context.Context) (*Identity, error) {
	k := d.Keys
	return &Identity{EKPublic: k.EKPublic, AKPublic: k.AKPublic, EKCert: k.EKCert, EKChain: k.EKChain}, nil
}

func (d *TPMDevice) ActivateCredential(ctx context.Context, blob, encSecret []byte) ([]byte, error) {
	return d.TPM.ActivateCredential(ctx, d.Keys, blob, encSecret)
}

func (d *TPMDevice) ReadPCRs(ctx context.Context, pcrs []int) ([]wire.PCR, error) {
	return d.TPM.ReadPCRs(ctx, pcrs)
}

func (d *TPMDevice) Quote(ctx context.Context, qualifying []byte, pcrs []int) ([]byte, []byte, error) {
	return d.TPM.Quote(ctx, d.Keys, qualifying, pcrs)
}

func (d *TPMDevice) EventLog() ([]byte, error) { return d.ReadEventLog() }

func (d *TPMDevice) Unseal(ctx context.Context, c *wire.Credential) ([]byte, error) {
	return d.TPM.Unseal(ctx, d.Keys, c)
}

func (d *TPMDevice) ExtendPCR(ctx context.Context, pcr int, data []byte) error {
	return d.TPM.ExtendPCR(ctx, pcr, data)
}
