package evidence

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// ErrActivation means an activation proof does not match the secret.
var ErrActivation = errors.New("credential activation proof mismatch")

// ActivationSecretSize is the size of the secret NewActivation wraps.
const ActivationSecretSize = 32

// NewActivation makes a credential that only the TPM holding both the EK and
// the AK can activate (TPM2_MakeCredential in software): the secret is
// encrypted to the EK and bound to the AK's Name. It returns the
// TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents for the agent and the
// 32-byte secret to check the agent's proof against. Both public areas are
// checked with ParseEK and ParseAK first.
func NewActivation(rand io.Reader, ekPublic, akPublic []byte) (blob, encSecret, secret []byte, err error) {
	k, err := ParseKeys(ekPublic, akPublic)
	if err != nil {
		return nil, nil, nil, err
	}
	return k.NewActivation(rand)
}

// ActivationProof returns HMAC-SHA256(secret, data), what the agent sends to
// show it activated the credential. data is wire.ActivationProofData.
func ActivationProof(secret, data []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write(data)
	return mac.Sum(nil)
}

// VerifyActivationProof checks, in constant time, that proof is
// ActivationProof(secret, data). A mismatch wraps ErrActivation.
func VerifyActivationProof(secret, proof, data []byte) error {
	if len(secret) == 0 {
		return fmt.Errorf("empty activation secret: %w", ErrActivation)
	}
	if !hmac.Equal(ActivationProof(secret, data), proof) {
		return ErrActivation
	}
	return nil
}
