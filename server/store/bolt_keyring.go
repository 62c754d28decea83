package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keyKeyring holds the secrets keyring in the meta bucket; absent until
// first set, so no schema change.
var keyKeyring = []byte("keyring")

// Keyring implements KeyringStore.
func (db *DB) Keyring(ctx context.Context) (Keyring, error) {
	var k Keyring
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var err error
		k, err = decodeKeyring(tx.Bucket(bucketMeta).Get(keyKeyring))
		return err
	})
	return k, err
}

// SetKeyring implements KeyringStore.
func (db *DB) SetKeyring(ctx context.Context, prev uint64, recipients []string) (Keyring, error) {
	var next Keyring
	err := db.update(ctx, func(tx *bolt.Tx) error {
		cur, err := decodeKeyring(tx.Bucket(bucketMeta).Get(keyKeyring))
		if err != nil {
			return err
		}
		var v []byte
		if next, v, err = nextKeyring(cur, prev, recipients); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyKeyring, v)
	})
	return next, err
}

// PutSecretSealed implements KeyringStore.
func (db *DB) PutSecretSealed(ctx context.Context, machineID, name string, ciphertext []byte, keyring uint64) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	if name == "" || len(name) > maxSecretNameLen {
		return fmt.Errorf("put secret: invalid name of %d bytes", len(name))
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		k, err := decodeKeyring(tx.Bucket(bucketMeta).Get(keyKeyring))
		if err != nil {
			return err
		}
		if k.Version != keyring {
			return fmt.Errorf("put secret %q: encrypted to keyring %d, now %d: %w", name, keyring, k.Version, ErrKeyringChanged)
		}
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

// RewrapSecret implements KeyringStore.
func (db *DB) RewrapSecret(ctx context.Context, machineID, name string, old, new []byte, keyring uint64) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		k, err := decodeKeyring(tx.Bucket(bucketMeta).Get(keyKeyring))
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketSecrets).Bucket([]byte(machineID))
		var cur []byte
		if b != nil && name != "" {
			cur = b.Get([]byte(name))
		}
		if err := checkRewrap(k, cur, old, keyring, machineID, name); err != nil {
			return err
		}
		return b.Put([]byte(name), new)
	})
}

// SecretMachines implements KeyringStore.
func (db *DB) SecretMachines(ctx context.Context) ([]string, error) {
	var ids []string
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSecrets).ForEachBucket(func(k []byte) error {
			if b := tx.Bucket(bucketSecrets).Bucket(k); b != nil {
				if k, _ := b.Cursor().First(); k == nil {
					return nil // emptied
				}
				ids = append(ids, string(k))
			}
			return nil
		})
	})
	return ids, err
}
