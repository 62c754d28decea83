package loadgen

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sealroot/sealroot/server/attest/evidence"
)

// TPMCPUPerAttestation measures the CPU time the simulated agents' software
// TPMs spend on one attestation, what a real machine's TPM does in its
// own chip: the credential activation (an RSA-2048 decryption with the
// EK), the PCR read and the quote (an ECDSA signature). It runs n of them
// in turn over agents, each on a challenge made beforehand, and returns
// the process's CPU time per one (0 if the CPU time is unknown). Nothing
// else should run meanwhile.
func TPMCPUPerAttestation(ctx context.Context, rand io.Reader, agents []*Agent, pcrs []int, n int) (time.Duration, error) {
	type challenge struct{ blob, encSecret, qualifying []byte }
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
		chs[i] = challenge{blob, enc, q}
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
	}
	return (processCPU() - cpu0) / time.Duration(max(n, 1)), nil
}
