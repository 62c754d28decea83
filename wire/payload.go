package wire

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// Payload encryption: a Credential's Ciphertext is
//
//	nonce (PayloadNonceSize bytes) | AES-256-GCM(key, nonce, JSON Payload, aad)
//
// with aad = CredentialAAD(exporter, machineID). The key is the one sealed
// to the TPM; both ends use these two functions.
const (
	PayloadKeySize   = 32
	PayloadNonceSize = 12
)

// ErrDecrypt means the payload does not open under the key and additional
// data: wrong key, wrong session or machine, or tampered ciphertext.
var ErrDecrypt = errors.New("sealed payload does not decrypt")

// SealPayload encrypts plaintext under key with a random nonce from rand.
func SealPayload(rand io.Reader, key, plaintext, aad []byte) ([]byte, error) {
	aead, err := payloadAEAD(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, PayloadNonceSize, PayloadNonceSize+len(plaintext)+aead.Overhead())
	if _, err := io.ReadFull(rand, out); err != nil {
		return nil, fmt.Errorf("payload nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, aad), nil
}

// OpenPayload decrypts what SealPayload produced. Any failure wraps ErrDecrypt.
func OpenPayload(key, ciphertext, aad []byte) ([]byte, error) {
	aead, err := payloadAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrDecrypt)
	}
	if len(ciphertext) < PayloadNonceSize+aead.Overhead() {
		return nil, fmt.Errorf("ciphertext of %d bytes: %w", len(ciphertext), ErrDecrypt)
	}
	plain, err := aead.Open(nil, ciphertext[:PayloadNonceSize], ciphertext[PayloadNonceSize:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

func payloadAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != PayloadKeySize {
		return nil, fmt.Errorf("key of %d bytes, want %d", len(key), PayloadKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}
