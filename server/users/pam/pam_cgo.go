//go:build linux && cgo

package pam

import (
	"context"
	"errors"
	"fmt"

	"github.com/msteinert/pam/v2"
)

// Verifier checks passwords with PAM. It is safe for concurrent use:
// each check is its own PAM transaction.
type Verifier struct{ cfg Config }

// New returns a Verifier for cfg.
func New(cfg Config) (*Verifier, error) {
	if cfg.Service == "" {
		return nil, errors.New("pam: a service name is required")
	}
	return &Verifier{cfg: cfg}, nil
}

// Verify implements users.Verifier: authenticate, then check the account
// (expired, locked). PAM's own message is the refusal reason.
func (v *Verifier) Verify(ctx context.Context, user string, password []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	// PAM asks for the password through the conversation; it is given
	// once and then refused, so a stack that asks twice fails.
	given := false
	conv := pam.ConversationFunc(func(s pam.Style, _ string) (string, error) {
		switch s {
		case pam.PromptEchoOff:
			if given {
				return "", errors.New("password asked twice")
			}
			given = true
			return string(password), nil
		case pam.PromptEchoOn:
			return user, nil
		case pam.ErrorMsg, pam.TextInfo:
			return "", nil
		}
		return "", fmt.Errorf("unsupported PAM conversation style %d", s)
	})
	t, err := pam.StartConfDir(v.cfg.Service, user, conv, v.cfg.ConfDir)
	if err != nil {
		return "", fmt.Errorf("pam start %s: %w", v.cfg.Service, err)
	}
	defer t.End()
	if err := t.Authenticate(pam.DisallowNullAuthtok); err != nil {
		return refusal(err)
	}
	if err := t.AcctMgmt(pam.DisallowNullAuthtok); err != nil {
		return refusal(err)
	}
	return "", nil
}

// refusal turns PAM's answer into a refusal reason, or an error when PAM
// itself failed (its modules or configuration).
func refusal(err error) (string, error) {
	var pe pam.Error
	if errors.As(err, &pe) {
		switch pe {
		case pam.ErrSystem, pam.ErrBuf, pam.ErrService, pam.ErrOpen, pam.ErrSymbol, pam.ErrAuthinfoUnavail, pam.ErrAbort:
			return "", fmt.Errorf("pam: %w", err)
		}
	}
	return "pam: " + err.Error(), nil
}
