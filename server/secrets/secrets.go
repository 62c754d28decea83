// Package secrets encrypts per-machine secrets at rest with age. Each
// server has its own X25519 identity (Box); secrets are encrypted to every
// member server's recipient (EncryptTo, the keyring in server/keyring), so
// any member decrypts them with its own identity. The store only ever
// sees ciphertext; a copy of the state without an identity file reveals no
// secret.
package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"filippo.io/age"
)

// ErrPermissions is returned by LoadOrCreate when an existing identity file
// is accessible to group or others.
var ErrPermissions = errors.New("identity file is accessible by other users")

// maxIdentityFile bounds how much of an identity file is read.
const maxIdentityFile = 64 << 10

// Box encrypts and decrypts with one age X25519 identity. It is safe for
// concurrent use.
type Box struct {
	identity *age.X25519Identity
}

// LoadOrCreate loads the age identity at path, or creates one there (mode
// 0600, parent directory 0700) when the file does not exist. An existing
// file with any group or other permission bits fails with ErrPermissions.
func LoadOrCreate(path string) (*Box, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("load secrets identity: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load secrets identity: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load secrets identity %s: mode %v: %w (want 0600)", path, perm, ErrPermissions)
	}
	id, err := parse(io.LimitReader(f, maxIdentityFile))
	if err != nil {
		return nil, fmt.Errorf("load secrets identity %s: %w", path, err)
	}
	return &Box{identity: id}, nil
}

func parse(r io.Reader) (*age.X25519Identity, error) {
	ids, err := age.ParseIdentities(r)
	if err != nil {
		return nil, err
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("%d identities, want 1", len(ids))
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("identity of type %T, want X25519", ids[0])
	}
	return id, nil
}

// create writes a new identity to path without ever replacing a file: it
// writes a temporary file, syncs it and hard-links it into place.
func create(path string) (*Box, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate secrets identity: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create secrets identity: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".identity-*")
	if err != nil {
		return nil, fmt.Errorf("create secrets identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	content := fmt.Sprintf("# sealroot secrets identity; public key: %s\n%s\n", id.Recipient(), id)
	_, err = tmp.WriteString(content)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return nil, fmt.Errorf("create secrets identity %s: %w", path, err)
	}
	return &Box{identity: id}, nil
}

// Recipient returns the box's public key, "age1...".
func (b *Box) Recipient() string { return b.identity.Recipient().String() }

// Encrypt encrypts plaintext to the box's identity.
func (b *Box) Encrypt(plaintext []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, b.identity.Recipient())
	if err != nil {
		return nil, fmt.Errorf("age.Encrypt: %w", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, fmt.Errorf("age.Encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("age.Encrypt: %w", err)
	}
	return buf.Bytes(), nil
}

// Decrypt decrypts ciphertext made by Encrypt with the same identity. A
// ciphertext for another identity fails with an *age.NoIdentityMatchError.
func (b *Box) Decrypt(ciphertext []byte) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(ciphertext), b.identity)
	if err != nil {
		return nil, fmt.Errorf("age.Decrypt: %w", err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("age.Decrypt: %w", err)
	}
	return out, nil
}

// String describes the box by its public key only.
func (b *Box) String() string {
	return "secrets.Box(" + b.Recipient() + ")"
}
