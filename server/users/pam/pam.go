// Package pam checks per-user root logins with the site's PAM stack
// (LDAP, Kerberos, local accounts), as a users.Verifier: the user name
// and password typed on the machine's console are handed to PAM service
// Service for authentication and account checks (pam_authenticate,
// pam_acct_mgmt), never logged.
//
// It needs cgo and libpam (Debian: libpam0g-dev to build); a build
// without cgo gets a Verifier that refuses with ErrUnavailable.
package pam

import (
	"errors"
)

// ErrUnavailable means this sealroot was built without PAM (no cgo).
var ErrUnavailable = errors.New("PAM is not available in this build (built without cgo)")

// Config configures a Verifier.
type Config struct {
	// Service is the PAM service name (/etc/pam.d/<Service>).
	Service string
	// ConfDir, when set, is read instead of /etc/pam.d (tests).
	ConfDir string
}
