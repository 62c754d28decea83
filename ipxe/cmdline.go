package ipxe

import (
	"fmt"
	"strings"
)

// secretWords are substrings of command-line keys that name credentials.
var secretWords = []string{"password", "passwd", "secret", "token", "chap", "credential"}

// CheckCmdline reports whether cmdline is safe to put into a script: at most
// 2048 bytes from a conservative character set (ErrInvalidCmdline), and no
// key that looks like a credential (ErrSecretInCmdline).
func CheckCmdline(cmdline string) error { return checkCmdline(cmdline) }

func checkCmdline(cmdline string) error {
	if len(cmdline) > maxCmdlineLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidCmdline, maxCmdlineLen)
	}
	for _, c := range []byte(cmdline) {
		if !isCmdlineByte(c) {
			return fmt.Errorf("%w: character %q not allowed", ErrInvalidCmdline, c)
		}
	}
	if strings.Contains(cmdline, "||") || strings.Contains(cmdline, "&&") {
		return fmt.Errorf("%w: iPXE control operators not allowed", ErrInvalidCmdline)
	}
	for _, arg := range strings.Fields(cmdline) {
		if key := secretKey(arg); key != "" {
			// The value is never echoed: it may be the secret itself.
			return fmt.Errorf("%w: key %q", ErrSecretInCmdline, truncate(key))
		}
	}
	return nil
}

// isCmdlineByte reports whether c may appear in a kernel command line.
// Excluded: control characters (newlines), '$' '{' '}' (iPXE settings
// expansion), quotes and '\' (iPXE and kernel quoting), '#' (comments),
// and non-ASCII. '|' and '&' are allowed alone but not doubled.
func isCmdlineByte(c byte) bool {
	if isNameByte(c) {
		return true
	}
	return strings.IndexByte(" =,:/+@%~^!*?()[]<>|&;", c) >= 0
}

// secretKey returns the key of arg ("key" or "key=value") if it looks like
// it names a credential, else "".
func secretKey(arg string) string {
	key, _, _ := strings.Cut(arg, "=")
	k := strings.ToLower(key)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return key
		}
	}
	// "key=", "luks.key=", "apikey=", "privkey=", "psk=", but not "keymap=".
	last := k[strings.LastIndexAny(k, ".-_")+1:]
	if strings.HasSuffix(last, "key") || last == "psk" {
		return key
	}
	return ""
}
