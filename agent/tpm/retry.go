package tpm

import (
	"encoding/binary"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// Response codes that ask the caller to send the same command again
// (TPM 2.0 Part 2, 6.6.3): TPM_RC_RETRY (swtpm and busy firmware TPMs),
// TPM_RC_YIELDED and TPM_RC_TESTING (self-test still running).
const (
	rcYielded = 0x908
	rcTesting = 0x90A
	rcRetry   = 0x922
)

// Retry bounds: a command is sent at most retryAttempts times, waiting
// retryDelay, then twice that, and so on (about 10 s in all).
const (
	retryAttempts = 10
	retryDelay    = 20 * time.Millisecond
)

// retryTPM resends a command while the TPM answers with a retry code.
type retryTPM struct {
	transport.TPM
	sleep func(time.Duration)
}

// Send implements transport.TPM. After the last attempt it returns the
// TPM's retry response, which go-tpm turns into an error.
func (r retryTPM) Send(cmd []byte) ([]byte, error) {
	delay := retryDelay
	for attempt := 1; ; attempt++ {
		rsp, err := r.TPM.Send(cmd)
		if err != nil || attempt == retryAttempts || !isRetry(rsp) {
			return rsp, err
		}
		r.sleep(delay)
		delay = min(2*delay, 2*time.Second)
	}
}

// isRetry reports whether a response's code asks for the command again.
func isRetry(rsp []byte) bool {
	if len(rsp) < 10 {
		return false
	}
	switch binary.BigEndian.Uint32(rsp[6:10]) {
	case rcYielded, rcTesting, rcRetry:
		return true
	}
	return false
}
