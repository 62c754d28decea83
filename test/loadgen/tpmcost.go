package loadgen

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/server/seal"
	"github.com/sealroot/sealroot/wire"
)

// TPMCPUPerAttestation measures the CPU time the simulated agents' software
// TPMs spend on one attestation, what a real machine's TPM does in its
// own chip: the credential activation (an RSA-2048 decryption with the
// EK), the PCR read, the quote (an ECDSA signature) and the unsealing of
// the credential (TPM2_Import and TPM2_Unseal: another RSA-2048
// decryption with the EK). It runs n of them in turn over agents, each on
// a challenge and a sealed credential made beforehand, and returns the
// process's CPU time per one (0 if the CPU time is unknown). The PCR 15
// extend after the unseal (one SHA-256) is left out: it would change the
// agents' PCRs. Nothing else should run meanwhile.
func TPMCPUPerAttestation(ctx context.Context, rand io.Reader, agents []*Agent, pcrs []int, n int) (time.Duration, error) {
	type challenge struct {
		blob, encSecret, qualifying []byte
		cred                        *wire.Credential
	}
	chs := make([]challenge, n)
	for i := range chs {
		a := agents[i%len(agents)]
		blob, enc, _, err := evidence.NewActivation(rand, a.TPM.EKPublic(), a.TPM.AKPublic())
		if err != nil {
			return 0, fmt.Errorf("activation challenge: %w", err)
		}
		q := make([]byte, 32)
		if _, err := io.ReadFull(rand, q); err != nil {
			return 0, fmt.Errorf("qualifying data: %w", err)
		}
		// Sealed to the PCRs as they are, so the policy holds.
		cred, err := seal.Seal(rand, a.TPM.EKPublic(), a.TPM.PCRs(pcrs), []byte("payload"), q)
		if err != nil {
			return 0, fmt.Errorf("sealed credential: %w", err)
		}
		chs[i] = challenge{blob, enc, q, cred}
	}
	cpu0 := processCPU()
	for i, ch := range chs {
		a := agents[i%len(agents)]
		if _, err := a.ActivateCredential(ctx, ch.blob, ch.encSecret); err != nil {
			return 0, fmt.Errorf("activate credential: %w", err)
		}
		if _, err := a.ReadPCRs(ctx, pcrs); err != nil {
			return 0, fmt.Errorf("read PCRs: %w", err)
		}
		if _, _, err := a.Quote(ctx, ch.qualifying, pcrs); err != nil {
			return 0, fmt.Errorf("quote: %w", err)
		}
		if _, err := a.Unseal(ctx, ch.cred); err != nil {
			return 0, fmt.Errorf("unseal: %w", err)
		}
	}
	return (processCPU() - cpu0) / time.Duration(max(n, 1)), nil
}
