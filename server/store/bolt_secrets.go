package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// maxSecretNameLen bounds secret names (bbolt keys).
const maxSecretNameLen = 255

// PutSecret stores an encrypted secret for a machine, replacing any secret
// of the same name, and gives the machine a new Version. It fails with
// ErrNotFound if the machine does not exist.
func (db *DB) PutSecret(ctx context.Context, machineID, name string, ciphertext []byte) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	if name == "" || len(name) > maxSecretNameLen {
		return fmt.Errorf("put secret: invalid name of %d bytes", len(name))
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMachines).Get([]byte(machineID)) == nil {
			return fmt.Errorf("put secret %q: machine %s: %w", name, machineID, ErrNotFound)
		}
		b, err := tx.Bucket(bucketSecrets).CreateBucketIfNotExists([]byte(machineID))
		if err != nil {
			return fmt.Errorf("put secret %q: machine %s: %w", name, machineID, err)
		}
		if err := b.Put([]byte(name), ciphertext); err != nil {
			return fmt.Errorf("put secret %q: machine %s: %w", name, machineID, err)
		}
		if err := db.bumpVersion(tx, machineID); err != nil {
			return fmt.Errorf("put secret %q: %w", name, err)
		}
		return nil
	})
}

// Secret returns an encrypted secret, or ErrNotFound.
func (db *DB) Secret(ctx context.Context, machineID, name string) ([]byte, error) {
	if err := checkID(machineID); err != nil {
		return nil, err
	}
	var out []byte
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var v []byte
		if b := tx.Bucket(bucketSecrets).Bucket([]byte(machineID)); b != nil && name != "" {
			v = b.Get([]byte(name))
		}
		if v == nil {
			return fmt.Errorf("secret %q of machine %s: %w", name, machineID, ErrNotFound)
		}
		out = append([]byte(nil), v...) // v is only valid inside the transaction
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Secrets returns all encrypted secrets of a machine by name. A machine
// without secrets gives an empty map; an unknown machine gives ErrNotFound.
func (db *DB) Secrets(ctx context.Context, machineID string) (map[string][]byte, error) {
	if err := checkID(machineID); err != nil {
		return nil, err
	}
	out := make(map[string][]byte)
	err := db.view(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMachines).Get([]byte(machineID)) == nil {
			return fmt.Errorf("secrets of machine %s: %w", machineID, ErrNotFound)
		}
		b := tx.Bucket(bucketSecrets).Bucket([]byte(machineID))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteSecret removes a secret and gives the machine a new Version, or
// returns ErrNotFound.
func (db *DB) DeleteSecret(ctx context.Context, machineID, name string) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSecrets).Bucket([]byte(machineID))
		if b == nil || name == "" || b.Get([]byte(name)) == nil {
			return fmt.Errorf("delete secret %q of machine %s: %w", name, machineID, ErrNotFound)
		}
		if err := b.Delete([]byte(name)); err != nil {
			return fmt.Errorf("delete secret %q of machine %s: %w", name, machineID, err)
		}
		if err := db.bumpVersion(tx, machineID); err != nil {
			return fmt.Errorf("delete secret %q: %w", name, err)
		}
		return nil
	})
}
