package iscsi

import "errors"

// Errors a login ends with; each maps to a Login Response status
// (RFC 7143 section 11.13.5).
var (
	// ErrAuthFailed: CHAP failed or was refused (status 0x0201).
	ErrAuthFailed = errors.New("iscsi: authentication failure")
	// ErrNotAuthorized: the initiator may not use this target (0x0202).
	ErrNotAuthorized = errors.New("iscsi: initiator not authorized")
	// ErrTargetNotFound: no target has the requested name (0x0203).
	ErrTargetNotFound = errors.New("iscsi: target not found")
	// ErrMissingParameter: a required key is absent (0x0207).
	ErrMissingParameter = errors.New("iscsi: missing login parameter")
	// ErrUnsupportedVersion: no common iSCSI version (0x0205).
	ErrUnsupportedVersion = errors.New("iscsi: unsupported version")
	// ErrSessionNotFound: a login names a session that does not exist (0x020a).
	ErrSessionNotFound = errors.New("iscsi: session does not exist")
	// ErrLoginProtocol: any other initiator error in login (0x0200).
	ErrLoginProtocol = errors.New("iscsi: login protocol error")
	// ErrProtocol: a full-feature-phase protocol violation; the
	// connection is closed.
	ErrProtocol = errors.New("iscsi: protocol error")
)

// loginStatus maps a login error to its status class and detail.
func loginStatus(err error) (class, detail byte) {
	for _, m := range []struct {
		err    error
		detail byte
	}{
		{ErrAuthFailed, 0x01}, {ErrNotAuthorized, 0x02}, {ErrTargetNotFound, 0x03},
		{ErrUnsupportedVersion, 0x05}, {ErrMissingParameter, 0x07}, {ErrSessionNotFound, 0x0a},
	} {
		if errors.Is(err, m.err) {
			return 0x02, m.detail
		}
	}
	return 0x02, 0x00
}
