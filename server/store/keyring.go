package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Errors of KeyringStore; each means "read again and redo", never a lost
// write.
var (
	// ErrKeyringChanged is returned when the keyring is no longer at the
	// version the caller encrypted to or read.
	ErrKeyringChanged = errors.New("secrets keyring changed")
	// ErrSecretChanged is returned by RewrapSecret when the secret's
	// ciphertext is no longer the one the caller re-wrapped.
	ErrSecretChanged = errors.New("secret changed")
)

// Keyring is the list of age recipients every secret is encrypted to at
// rest: one per member server of the cluster, each holding its own
// identity. It is shared with the rest of the state (in etcd, by every
// server). Version counts its changes; 0 means none was ever set.
type Keyring struct {
	Version    uint64   `json:"version"`
	Recipients []string `json:"recipients"`
}

// KeyringStore keeps the secrets keyring and re-wraps secrets to it. *DB
// and *Etcd implement it. Every call decides against the current records
// inside its transaction.
type KeyringStore interface {
	// Keyring returns the keyring; Version 0 and no recipients when none
	// was set.
	Keyring(ctx context.Context) (Keyring, error)
	// SetKeyring replaces the recipients if the keyring is still at
	// version prev (ErrKeyringChanged otherwise) and returns the new one.
	SetKeyring(ctx context.Context, prev uint64, recipients []string) (Keyring, error)
	// PutSecretSealed is PutSecret for a ciphertext encrypted to the
	// keyring at version keyring: it fails with ErrKeyringChanged when a
	// server joined or left since, so a secret is never stored encrypted
	// to an old list.
	PutSecretSealed(ctx context.Context, machineID, name string, ciphertext []byte, keyring uint64) error
	// RewrapSecret replaces the secret's ciphertext old by new, which
	// holds the same value encrypted to the keyring at version keyring.
	// It fails with ErrSecretChanged when the secret is no longer old
	// (set again since), ErrKeyringChanged when the keyring moved on, and
	// ErrNotFound when the secret is gone. The value being the same, the
	// machine's Version is not changed.
	RewrapSecret(ctx context.Context, machineID, name string, old, new []byte, keyring uint64) error
	// SecretMachines returns the IDs of the machines that hold secrets,
	// sorted, without reading the machines' records.
	SecretMachines(ctx context.Context) ([]string, error)
}

var (
	_ KeyringStore = (*DB)(nil)
	_ KeyringStore = (*Etcd)(nil)
)

func decodeKeyring(v []byte) (Keyring, error) {
	var k Keyring
	if v == nil {
		return k, nil
	}
	if err := json.Unmarshal(v, &k); err != nil {
		return k, fmt.Errorf("keyring: %w: %v", ErrCorrupt, err)
	}
	return k, nil
}

// nextKeyring checks cur against prev and returns the encoded successor.
func nextKeyring(cur Keyring, prev uint64, recipients []string) (Keyring, []byte, error) {
	if cur.Version != prev {
		return cur, nil, fmt.Errorf("set keyring: at version %d, not %d: %w", cur.Version, prev, ErrKeyringChanged)
	}
	if len(recipients) == 0 {
		return cur, nil, errors.New("set keyring: no recipients: every secret would be lost")
	}
	next := Keyring{Version: prev + 1, Recipients: append([]string(nil), recipients...)}
	v, err := json.Marshal(next)
	return next, v, err
}

// checkRewrap decides a re-wrap against the current keyring and
// ciphertext (nil: none).
func checkRewrap(k Keyring, cur, old []byte, keyring uint64, machineID, name string) error {
	switch {
	case k.Version != keyring:
		return fmt.Errorf("rewrap secret %q of machine %s: %w", name, machineID, ErrKeyringChanged)
	case cur == nil:
		return fmt.Errorf("rewrap secret %q of machine %s: %w", name, machineID, ErrNotFound)
	case !bytes.Equal(cur, old):
		return fmt.Errorf("rewrap secret %q of machine %s: %w", name, machineID, ErrSecretChanged)
	}
	return nil
}

// migrateKeyring copies src's keyring, the recipients its ciphertexts are
// encrypted to, when dst has none yet. A dst keyring made meanwhile (a
// server already started on it) is kept: `sealroot cluster rewrap` on a
// member of both then re-wraps the copied secrets to it.
func migrateKeyring(ctx context.Context, src *DB, dst *Etcd) error {
	k, err := src.Keyring(ctx)
	if err != nil || k.Version == 0 {
		return err
	}
	if _, err := dst.SetKeyring(ctx, 0, k.Recipients); err != nil && !errors.Is(err, ErrKeyringChanged) {
		return fmt.Errorf("migrate: keyring: %w", err)
	}
	return nil
}
