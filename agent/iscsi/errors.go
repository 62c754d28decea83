package iscsi

import (
	"errors"
	"fmt"
)

// Errors of Login; test with errors.Is.
var (
	// ErrLoginProtocol: the target broke the login protocol (bad stage,
	// malformed keys, missing answers).
	ErrLoginProtocol = errors.New("iscsi: login protocol error")
	// ErrLoginRejected: the target answered with a non-success status;
	// the error is a *StatusError.
	ErrLoginRejected = errors.New("iscsi: login rejected by the target")
	// ErrTargetAuth: mutual CHAP failed: the target did not prove it
	// knows the target secret. The connection is not to the real target.
	ErrTargetAuth = errors.New("iscsi: target failed mutual CHAP authentication")
	// ErrNegotiation: an operational key was answered with a value the
	// kernel initiator cannot work with.
	ErrNegotiation = errors.New("iscsi: unacceptable negotiated parameter")
)

// StatusError is a Login Response with a non-zero status class (RFC 7143
// section 11.13.5). It wraps ErrLoginRejected.
type StatusError struct {
	Class, Detail byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("iscsi: login rejected by the target: status %#02x%02x (%s)", e.Class, e.Detail, e.reason())
}

func (e *StatusError) Unwrap() error { return ErrLoginRejected }

// AuthFailed reports whether the target refused our credentials
// (status 0x0201) or our name (0x0202).
func (e *StatusError) AuthFailed() bool { return e.Class == 2 && (e.Detail == 1 || e.Detail == 2) }

func (e *StatusError) reason() string {
	switch uint16(e.Class)<<8 | uint16(e.Detail) {
	case 0x0201:
		return "authentication failed"
	case 0x0202:
		return "authorization failure"
	case 0x0203:
		return "target not found"
	case 0x0204:
		return "target removed"
	case 0x0205:
		return "unsupported version"
	case 0x0207:
		return "missing parameter"
	case 0x020a:
		return "session does not exist"
	}
	switch e.Class {
	case 1:
		return "redirection"
	case 2:
		return "initiator error"
	case 3:
		return "target error"
	}
	return "unknown"
}
