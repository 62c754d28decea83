package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"
)

// ErrBadRecipient is returned for a string that is not an age X25519
// recipient ("age1..."), the public key of a server's identity.
var ErrBadRecipient = errors.New("not an age X25519 recipient")

// ParseRecipient checks s as a server's recipient and returns it in its
// canonical form.
func ParseRecipient(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "age1") {
		return "", fmt.Errorf("recipient %q: %w: want the age1... public key that `sealroot cluster recipient` prints on the server", clip(s), ErrBadRecipient)
	}
	r, err := age.ParseX25519Recipient(s)
	if err != nil {
		return "", fmt.Errorf("recipient %q: %w: %v", clip(s), ErrBadRecipient, err)
	}
	return r.String(), nil
}

// clip shortens what is echoed in an error: a recipient is public, but a
// pasted identity (AGE-SECRET-KEY-1...) is not and must not be repeated.
func clip(s string) string {
	if strings.HasPrefix(strings.ToUpper(s), "AGE-SECRET-KEY-") {
		return "AGE-SECRET-KEY-... (an identity, not a recipient: never paste it)"
	}
	if len(s) > 16 {
		return s[:16] + "..."
	}
	return s
}

// EncryptTo encrypts plaintext to every recipient ("age1..."): any of
// their identities decrypts it.
func EncryptTo(recipients []string, plaintext []byte) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("age.Encrypt: no recipients")
	}
	rs := make([]age.Recipient, 0, len(recipients))
	for _, s := range recipients {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w: %v", clip(s), ErrBadRecipient, err)
		}
		rs = append(rs, r)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rs...)
	if err != nil {
		return nil, fmt.Errorf("age.Encrypt: %w", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, fmt.Errorf("age.Encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("age.Encrypt: %w", err)
	}
	return buf.Bytes(), nil
}
