// Package softtpm is a software stand-in for a client TPM: an RSA-2048 EK, an
// ECDSA P-256 restricted-signing AK, software sha256 PCRs, credential
// activation and quotes, all in the TPM's wire formats.
//
// It exists for benchmarks and the load generator, where a real or
// simulated TPM is too slow or a process-wide singleton. It is NOT a TPM:
// it protects nothing and must never replace the simulator or swtpm in
// correctness tests.
//
// A TPM is safe for concurrent use.
package softtpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	agenttpm "github.com/sealroot/sealroot/agent/tpm"
	"io"
	"sync"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/wire"
)

// NumPCRs is the number of PCRs in the sha256 bank.
const NumPCRs = 24

// Errors, for errors.Is.
var (
	// ErrBadPCR means a PCR index or digest is invalid.
	ErrBadPCR = errors.New("softtpm: invalid PCR index or digest")
	// ErrIntegrity means a credential blob failed its integrity check
	// (TPM_RC_INTEGRITY).
	ErrIntegrity = errors.New("softtpm: credential integrity check failed")
	// ErrBadCredential means a credential blob or secret could not be
	// decoded or decrypted.
	ErrBadCredential = errors.New("softtpm: malformed credential")
)

// AKTemplate is the AK public area without its key: the agent's own
// template (agent/tpm), so the stand-in presents what a real agent does.
var AKTemplate = agenttpm.AKTemplate

// TPM is one software TPM.
type TPM struct {
	rand  io.Reader
	ek    *rsa.PrivateKey
	ak    *ecdsa.PrivateKey
	ekPub []byte // TPMT_PUBLIC
	akPub []byte // TPMT_PUBLIC
	akNam []byte // TPM2B_NAME contents

	mu sync.Mutex
	// The fields below are guarded by mu.
	pcrs         [NumPCRs][sha256.Size]byte
	clock        uint64
	resetCount   uint32
	restartCount uint32
}

// New creates a TPM with fresh keys. rand supplies the keys' randomness
// (RSA key generation may ignore it, see crypto/rsa) and OAEP and ECDSA
// randomness later.
func New(rand io.Reader) (*TPM, error) {
	ek, err := rsa.GenerateKey(rand, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate EK: %w", err)
	}
	ak, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return nil, fmt.Errorf("generate AK: %w", err)
	}
	t := &TPM{rand: rand, ek: ek, ak: ak}
	t.ekPub = tpm2.Marshal(ekPublic(ek))
	akPub := akPublic(ak)
	t.akPub = tpm2.Marshal(akPub)
	name, err := tpm2.ObjectName(&akPub)
	if err != nil {
		return nil, fmt.Errorf("AK name: %w", err)
	}
	t.akNam = name.Buffer
	return t, nil
}

// WithNewAK returns a TPM with t's EK, PCRs and clock and a fresh AK, as
// t is after its owner made a new AK: the same machine, another AK.
func (t *TPM) WithNewAK() (*TPM, error) {
	ak, err := ecdsa.GenerateKey(elliptic.P256(), t.rand)
	if err != nil {
		return nil, fmt.Errorf("generate AK: %w", err)
	}
	akPub := akPublic(ak)
	name, err := tpm2.ObjectName(&akPub)
	if err != nil {
		return nil, fmt.Errorf("AK name: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return &TPM{
		rand: t.rand, ek: t.ek, ak: ak, ekPub: t.ekPub, akPub: tpm2.Marshal(akPub), akNam: name.Buffer,
		pcrs: t.pcrs, clock: t.clock, resetCount: t.resetCount, restartCount: t.restartCount,
	}, nil
}

func ekPublic(k *rsa.PrivateKey) tpm2.TPMTPublic {
	pub := tpm2.RSAEKTemplate
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, 256))})
	return pub
}

func akPublic(k *ecdsa.PrivateKey) tpm2.TPMTPublic {
	pub := AKTemplate
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: k.X.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: k.Y.FillBytes(make([]byte, 32))},
	})
	return pub
}

// EKPublic returns the EK's TPMT_PUBLIC encoding.
func (t *TPM) EKPublic() []byte { return append([]byte(nil), t.ekPub...) }

// AKPublic returns the AK's TPMT_PUBLIC encoding.
func (t *TPM) AKPublic() []byte { return append([]byte(nil), t.akPub...) }

// ExtendPCR extends a sha256 PCR with digest, as TPM2_PCR_Extend does:
// PCR = SHA-256(PCR ‖ digest). It implements fakeboot.Extender.
func (t *TPM) ExtendPCR(pcr int, digest []byte) error {
	if pcr < 0 || pcr >= NumPCRs || len(digest) != sha256.Size {
		return fmt.Errorf("extend PCR %d with %d bytes: %w", pcr, len(digest), ErrBadPCR)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	h := sha256.New()
	h.Write(t.pcrs[pcr][:])
	h.Write(digest)
	h.Sum(t.pcrs[pcr][:0])
	return nil
}

// PCRs returns the values of the given PCRs, in that order. Invalid
// indices are skipped.
func (t *TPM) PCRs(indices []int) []wire.PCR {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]wire.PCR, 0, len(indices))
	for _, i := range indices {
		if i >= 0 && i < NumPCRs {
			out = append(out, wire.PCR{Index: i, Digest: append([]byte(nil), t.pcrs[i][:]...)})
		}
	}
	return out
}

// Reboot simulates a TPM Reset: PCRs return to zero and the reset count
// increases, as the quote's ClockInfo shows.
func (t *TPM) Reboot() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pcrs = [NumPCRs][sha256.Size]byte{}
	t.resetCount++
	t.restartCount = 0
}
