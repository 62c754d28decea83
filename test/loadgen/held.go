package loadgen

import (
	"context"
	"sync"
)

// HeldAgent is an Agent whose first attestation stops between the
// server's challenge and its evidence until Proceed, so that a test can
// act (revoke, kill a server, race another exchange) while the exchange
// is open. Later attestations are not held.
type HeldAgent struct {
	*Agent
	held, proceeded  sync.Once
	reached, proceed chan struct{}
}

// NewHeldAgent holds a's first attestation.
func NewHeldAgent(a *Agent) *HeldAgent {
	return &HeldAgent{Agent: a, reached: make(chan struct{}), proceed: make(chan struct{})}
}

// Reached is closed once the first attestation is held.
func (h *HeldAgent) Reached() <-chan struct{} { return h.reached }

// Proceed lets the held attestation go on; calls after the first do
// nothing.
func (h *HeldAgent) Proceed() { h.proceeded.Do(func() { close(h.proceed) }) }

// ActivateCredential holds the first call until Proceed or ctx ends.
func (h *HeldAgent) ActivateCredential(ctx context.Context, blob, secret []byte) ([]byte, error) {
	first := false
	h.held.Do(func() { first = true })
	if first {
		close(h.reached)
		select {
		case <-h.proceed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.Agent.ActivateCredential(ctx, blob, secret)
}
