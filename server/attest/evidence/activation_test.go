package evidence_test

import (
	"errors"
	"testing"

	"github.com/sealroot/sealroot/server/attest/evidence"
)

func TestVerifyActivationProof(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	data := []byte("proof data")
	proof := evidence.ActivationProof(secret, data)
	for _, tc := range []struct {
		name                string
		secret, proof, data []byte
		want                error
	}{
		{"ok", secret, proof, data, nil},
		{"other_data", secret, proof, []byte("other"), evidence.ErrActivation},
		{"other_secret", []byte("another secret"), proof, data, evidence.ErrActivation},
		{"truncated_proof", secret, proof[:31], data, evidence.ErrActivation},
		{"empty_proof", secret, nil, data, evidence.ErrActivation},
		{"empty_secret", nil, evidence.ActivationProof(nil, data), data, evidence.ErrActivation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := evidence.VerifyActivationProof(tc.secret, tc.proof, tc.data)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("VerifyActivationProof() = %v, want %v", err, tc.want)
			}
		})
	}
}
