// Package tpm is the agent's side of sealroot's TPM protocol: it derives the
// endorsement key (EK) and attestation key (AK), activates the server's
// credential, quotes and reads PCRs, unseals the per-boot credential key and
// extends PCRs.
//
// Nothing is persisted in the TPM: the EK and the AK are primary keys of the
// endorsement hierarchy created from fixed templates, so the same TPM yields
// the same keys every boot. Every transient object and session this package
// creates is flushed before its method returns, except the two keys, which
// Keys.Close flushes.
//
// The package uses only the go-tpm tpm2 API and builds without cgo.
//
// # Concurrency
//
// A TPM serializes its commands: its methods may be called from several
// goroutines. The TPM interface does not take a context, so a context is
// checked before each command, not during one.
package tpm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultPath is the kernel's TPM resource manager device.
const DefaultPath = "/dev/tpmrm0"

// MaxPCR is the highest PCR index this package accepts (PC Client TPMs
// have 24 PCRs).
const MaxPCR = 23

// Sentinel errors.
var (
	// ErrPolicyFail means the TPM refused to unseal because its PCRs differ
	// from those the credential was sealed to. Errors wrapping it also match
	// tpm2.TPMRCPolicyFail.
	ErrPolicyFail = errors.New("TPM PCR state differs from the sealed policy")
	// ErrImport means the TPM refused to import a sealed credential under
	// its EK, as when it was sealed to another TPM. Errors wrapping it also
	// wrap the TPM's response code.
	ErrImport = errors.New("sealed credential does not import under this TPM's EK")
	// ErrPCR means a PCR index is out of range or repeated, or the TPM did
	// not return a requested PCR.
	ErrPCR = errors.New("invalid or unavailable PCR")
	// ErrClosed means Keys were used after Close.
	ErrClosed = errors.New("TPM keys are closed")
)

// TPM runs sealroot's TPM operations on a TPM transport.
type TPM struct {
	mu  sync.Mutex // serializes commands; guards tpm
	tpm transport.TPM
}

// New returns a TPM that sends its commands to t. A command the TPM answers
// with TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING is sent again after a
// short, growing delay, a bounded number of times.
func New(t transport.TPM) *TPM {
	return &TPM{tpm: retryTPM{TPM: t, sleep: time.Sleep}}
}

// Open opens the TPM device at path (normally DefaultPath, whose resource
// manager also flushes transient objects when the process exits). The
// returned closer closes the device.
func Open(path string) (*TPM, io.Closer, error) {
	t, err := linuxtpm.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open TPM %s: %w", path, err)
	}
	return New(t), t, nil
}

// flush flushes a transient object or session handle.
func (t *TPM) flush(h tpm2.TPMHandle) error {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tpm); err != nil {
		return fmt.Errorf("tpm2.FlushContext(%#x): %w", uint32(h), err)
	}
	return nil
}

// policySession starts a policy session, runs policy in it and returns it
// with a function that flushes it. On error nothing is left loaded.
func (t *TPM) policySession(policy func(handle tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error) (tpm2.Session, func() error, error) {
	sess, closer, err := tpm2.PolicySession(t.tpm, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm2.StartAuthSession: %w", err)
	}
	if err := policy(sess.Handle(), sess.NonceTPM()); err != nil {
		return nil, nil, errors.Join(err, closer())
	}
	return sess, closer, nil
}

// endorsementPolicy satisfies the default EK policy,
// TPM2_PolicySecret(TPM_RH_ENDORSEMENT), in a session.
func (t *TPM) endorsementPolicy(handle tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.TPMRHEndorsement,
		PolicySession: handle,
		NonceTPM:      nonceTPM,
	}.Execute(t.tpm)
	if err != nil {
		return fmt.Errorf("tpm2.PolicySecret(endorsement): %w", err)
	}
	return nil
}

// ExtendPCR extends the sha256 bank of PCR pcr with SHA-256(data).
func (t *TPM) ExtendPCR(ctx context.Context, pcr int, data []byte) error {
	if pcr < 0 || pcr > MaxPCR {
		return fmt.Errorf("PCR %d: %w", pcr, ErrPCR)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256,
			Digest:  sum[:],
		}}},
	}.Execute(t.tpm)
	if err != nil {
		return fmt.Errorf("tpm2.PCRExtend(%d): %w", pcr, err)
	}
	return nil
}

// Random returns n bytes from the TPM's random number generator.
func (t *TPM) Random(ctx context.Context, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative random length %d", n)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]byte, 0, n)
	for len(out) < n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rsp, err := tpm2.GetRandom{BytesRequested: uint16(min(n-len(out), 64))}.Execute(t.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm2.GetRandom: %w", err)
		}
		if len(rsp.RandomBytes.Buffer) == 0 {
			return nil, errors.New("tpm2.GetRandom returned no bytes")
		}
		out = append(out, rsp.RandomBytes.Buffer[:min(len(rsp.RandomBytes.Buffer), n-len(out))]...)
	}
	return out, nil
}
