package initramfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// ErrSecretInConfig reports agent configuration that looks like it holds a
// secret. The initramfs is public: anything in it is readable by anyone on
// the boot network.
var ErrSecretInConfig = errors.New("initramfs: agent config contains a secret")

// ErrBadAgentConfig reports agent configuration that is not a JSON object.
var ErrBadAgentConfig = errors.New("initramfs: agent config is not a JSON object")

// privateKeyPEM matches the header of any PEM private key block
// ("PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", ...), also
// when embedded in a JSON string.
var privateKeyPEM = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)

// secretFieldWords are substrings of JSON field names (lower case, without
// '_' and '-') that name credentials.
var secretFieldWords = []string{"password", "passwd", "passphrase", "secret", "token", "private", "psk", "apikey"}

// CheckAgentConfig reports an error wrapping ErrSecretInConfig if cfg holds
// a PEM private key or a field named like a credential (password, secret,
// token, private key, PSK, API key), and ErrBadAgentConfig if cfg is not a
// JSON object. The error names the offending field, never its value.
func CheckAgentConfig(cfg []byte) error {
	if privateKeyPEM.Match(cfg) {
		return fmt.Errorf("%w: PEM private key block", ErrSecretInConfig)
	}
	dec := json.NewDecoder(bytes.NewReader(cfg))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadAgentConfig, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrBadAgentConfig)
	}
	return checkFields("", v)
}

// checkFields walks v and rejects credential-like field names.
func checkFields(at string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if isSecretField(k) {
				return fmt.Errorf("%w: field %q", ErrSecretInConfig, at+k)
			}
			if err := checkFields(at+k+".", v[k]); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := checkFields(fmt.Sprintf("%s%d.", at, i), e); err != nil {
				return err
			}
		}
	}
	return nil
}

// isSecretField reports whether a JSON field name looks like a credential.
func isSecretField(name string) bool {
	n := strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(name))
	for _, w := range secretFieldWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}
