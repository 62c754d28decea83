// Package users is sealroot's own list of users for per-user roots: each
// user's password stored as an argon2id hash with its parameters, and the
// checks a login goes through (password, failure rate limits).
package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters, stored with each hash so that
// raising them later leaves older hashes verifiable.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	KeyLen  uint32
}

// DefaultParams are RFC 9106's second recommended option (64 MiB, 3
// passes) with 2 lanes and a 32-byte key.
var DefaultParams = Params{Memory: 64 << 10, Time: 3, Threads: 2, KeyLen: 32}

// Bounds on the parameters and sizes a stored hash may name, so that a
// damaged or hostile record cannot make a verification take unbounded
// memory or time.
const (
	maxMemory   = 1 << 20 // KiB: 1 GiB
	maxTime     = 16
	maxThreads  = 16
	minKeyLen   = 16
	maxKeyLen   = 64
	saltLen     = 16
	minSaltLen  = 8
	maxSaltLen  = 64
	MaxPassword = 1024 // bytes
)

// Errors.
var (
	// ErrBadHash means a stored hash cannot be parsed or names parameters
	// out of bounds.
	ErrBadHash = errors.New("malformed password hash")
	// ErrBadPassword means a password is empty or longer than
	// MaxPassword.
	ErrBadPassword = errors.New("invalid password")
)

var b64 = base64.RawStdEncoding

// Hash returns password's argon2id hash in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$key) with a fresh random salt
// from rnd (crypto/rand when nil).
func Hash(password []byte, p Params, rnd io.Reader) (string, error) {
	if err := CheckPassword(password); err != nil {
		return "", err
	}
	if err := p.check(); err != nil {
		return "", err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	salt := make([]byte, saltLen)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return "", fmt.Errorf("password hash: salt: %w", err)
	}
	key := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword refuses an empty password, or one longer than
// MaxPassword bytes.
func CheckPassword(password []byte) error {
	if len(password) == 0 || len(password) > MaxPassword {
		return fmt.Errorf("%w: want 1 to %d bytes, got %d", ErrBadPassword, MaxPassword, len(password))
	}
	return nil
}

func (p Params) check() error {
	if p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory || p.Time < 1 || p.Time > maxTime ||
		p.Threads < 1 || p.Threads > maxThreads || p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen {
		return fmt.Errorf("%w: parameters m=%d t=%d p=%d keylen=%d out of bounds", ErrBadHash, p.Memory, p.Time, p.Threads, p.KeyLen)
	}
	return nil
}

var phc = regexp.MustCompile(`^\$argon2id\$v=19\$m=([0-9]{1,7}),t=([0-9]{1,2}),p=([0-9]{1,2})\$([A-Za-z0-9+/]{11,86})\$([A-Za-z0-9+/]{22,86})$`)

// Parse returns the parameters, salt and key of a stored hash.
func Parse(encoded string) (Params, []byte, []byte, error) {
	m := phc.FindStringSubmatch(encoded)
	if m == nil {
		return Params{}, nil, nil, fmt.Errorf("%w: not an argon2id v=19 PHC string", ErrBadHash)
	}
	var p Params
	var threads uint32
	fmt.Sscan(m[1], &p.Memory)
	fmt.Sscan(m[2], &p.Time)
	fmt.Sscan(m[3], &threads)
	if threads > maxThreads {
		return Params{}, nil, nil, fmt.Errorf("%w: %d threads", ErrBadHash, threads)
	}
	p.Threads = uint8(threads)
	salt, err1 := b64.DecodeString(m[4])
	key, err2 := b64.DecodeString(m[5])
	if err := errors.Join(err1, err2); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: %v", ErrBadHash, err)
	}
	p.KeyLen = uint32(len(key))
	if len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return Params{}, nil, nil, fmt.Errorf("%w: salt of %d bytes", ErrBadHash, len(salt))
	}
	if err := p.check(); err != nil {
		return Params{}, nil, nil, err
	}
	return p, salt, key, nil
}

// Verify reports whether password matches the stored hash, comparing in
// constant time. A malformed hash is an error (ErrBadHash), never a match.
func Verify(encoded string, password []byte) (bool, error) {
	p, salt, key, err := Parse(encoded)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPassword {
		return false, nil
	}
	got := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// NeedsRehash reports whether a stored hash was made with other
// parameters than p (to rehash at the next successful login).
func NeedsRehash(encoded string, p Params) bool {
	got, _, _, err := Parse(encoded)
	return err != nil || got != p
}

// namePattern is a user name: a POSIX-portable login name.
var namePattern = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// ErrBadName means a user name is malformed.
var ErrBadName = errors.New("invalid user name")

// CheckName refuses anything but a lower-case login name of at most 32
// characters (letters, digits, _ . -, not starting with a digit, dot or
// dash).
func CheckName(name string) error {
	if !namePattern.MatchString(name) || strings.HasSuffix(name, ".") {
		return fmt.Errorf("%w %q: want 1 to 32 of a-z 0-9 _ . - starting with a letter or _", ErrBadName, name)
	}
	return nil
}
