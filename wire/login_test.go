package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestLoginLimits(t *testing.T) {
	long := bytes.Repeat([]byte("x"), MaxLoginPassword)
	if _, err := Marshal(&Login{User: strings.Repeat("u", MaxLoginUser), Password: long}); err != nil {
		t.Fatalf("largest login does not fit its frame: %v", err)
	}
	for name, m := range map[string]Message{
		"empty user":      &Login{User: "", Password: []byte("x")},
		"long user":       &Login{User: strings.Repeat("u", MaxLoginUser+1), Password: []byte("x")},
		"control in user": &Login{User: "a\nb", Password: []byte("x")},
		"empty password":  &Login{User: "a"},
		"long password":   &Login{User: "a", Password: append(long, 'x')},
		"long reason":     &LoginPrompt{Reason: strings.Repeat("r", maxPromptReason+1)},
		"negative retry":  &LoginPrompt{RetryAfterMillis: -1},
	} {
		b, err := Marshal(m)
		if err != nil {
			continue // over the frame limit is refused too
		}
		if _, err := Unmarshal(b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s decoded: %v", name, err)
		}
	}
}
