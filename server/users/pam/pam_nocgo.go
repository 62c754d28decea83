//go:build !linux || !cgo

package pam

import "context"

// Verifier refuses: this build has no PAM.
type Verifier struct{}

// New returns ErrUnavailable.
func New(Config) (*Verifier, error) { return nil, ErrUnavailable }

// Verify returns ErrUnavailable.
func (*Verifier) Verify(context.Context, string, []byte) (string, error) { return "", ErrUnavailable }
