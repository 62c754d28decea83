package wire

import (
	"fmt"
	"unicode/utf8"
)

// Per-user roots. When a machine's root is per user, the server answers
// the agent's Evidence with a LoginPrompt instead of the Credential; the
// agent asks for a user name and password on its console(s) and sends a
// Login on the same attested stream. The server answers with the
// Credential (the user's root) or another LoginPrompt saying why (wrong
// password, wait, root in use elsewhere), or a Status refusing the boot.
const (
	TypeLoginPrompt Type = 8
	TypeLogin       Type = 9
)

// Limits of login fields.
const (
	MaxLoginUser     = 64
	MaxLoginPassword = 1024
	maxPromptReason  = 512
)

// LoginPrompt asks the agent for a user's login.
type LoginPrompt struct {
	// Reason says why the previous login failed; empty at first.
	Reason string `json:"reason,omitempty"`
	// RetryAfterMillis is how long the server will refuse the next try.
	RetryAfterMillis int64 `json:"retry_after_ms,omitempty"`
}

// Login is a user's login typed on the machine's console. The password
// travels only inside the attested TLS stream; neither side logs it.
type Login struct {
	User     string `json:"user"`
	Password []byte `json:"password"`
}

func (*LoginPrompt) Type() Type { return TypeLoginPrompt }
func (*Login) Type() Type       { return TypeLogin }

func (p *LoginPrompt) validate() error {
	if len(p.Reason) > maxPromptReason {
		return fmt.Errorf("reason of %d bytes", len(p.Reason))
	}
	if p.RetryAfterMillis < 0 || p.RetryAfterMillis > 24*3600*1000 {
		return fmt.Errorf("retry_after_ms %d", p.RetryAfterMillis)
	}
	return nil
}

func (l *Login) validate() error {
	if len(l.User) == 0 || len(l.User) > MaxLoginUser || !utf8.ValidString(l.User) {
		return fmt.Errorf("user name of %d bytes", len(l.User))
	}
	for _, r := range l.User {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("control character in user name")
		}
	}
	if len(l.Password) == 0 || len(l.Password) > MaxLoginPassword {
		return fmt.Errorf("password of %d bytes", len(l.Password))
	}
	return nil
}
