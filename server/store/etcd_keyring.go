package store

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func (k etcdKeys) keyring() string { return k.prefix + "meta/keyring" }

// Keyring implements KeyringStore.
func (s *Etcd) Keyring(ctx context.Context) (Keyring, error) {
	var k Keyring
	err := s.view(ctx, func(tx *etcdTx) error {
		var err error
		k, err = s.keyringTx(tx)
		return err
	})
	return k, err
}

func (s *Etcd) keyringTx(tx *etcdTx) (Keyring, error) {
	v, _, err := tx.get(s.keys.keyring())
	if err != nil {
		return Keyring{}, err
	}
	return decodeKeyring(v)
}

// SetKeyring implements KeyringStore.
func (s *Etcd) SetKeyring(ctx context.Context, prev uint64, recipients []string) (Keyring, error) {
	var next Keyring
	err := s.txn(ctx, func(tx *etcdTx) error {
		cur, err := s.keyringTx(tx)
		if err != nil {
			return err
		}
		var v []byte
		if next, v, err = nextKeyring(cur, prev, recipients); err != nil {
			return err
		}
		tx.put(s.keys.keyring(), v)
		return nil
	})
	return next, err
}

// PutSecretSealed implements KeyringStore: the keyring read makes the
// commit conditional on it, like every read of an etcdTx.
func (s *Etcd) PutSecretSealed(ctx context.Context, machineID, name string, ciphertext []byte, keyring uint64) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	if err := checkSecretName(name); err != nil {
		return fmt.Errorf("put secret: %w", err)
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		k, err := s.keyringTx(tx)
		if err != nil {
			return err
		}
		if k.Version != keyring {
			return fmt.Errorf("put secret %q: encrypted to keyring %d, now %d: %w", name, keyring, k.Version, ErrKeyringChanged)
		}
		tx.put(s.keys.secrets(machineID)+name, ciphertext)
		if err := s.bumpVersion(tx, machineID); err != nil {
			return fmt.Errorf("put secret %q: %w", name, err)
		}
		return nil
	})
}

// RewrapSecret implements KeyringStore.
func (s *Etcd) RewrapSecret(ctx context.Context, machineID, name string, old, new []byte, keyring uint64) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	if err := checkSecretName(name); err != nil {
		return fmt.Errorf("rewrap secret: %w", err)
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		k, err := s.keyringTx(tx)
		if err != nil {
			return err
		}
		key := s.keys.secrets(machineID) + name
		cur, ok, err := tx.get(key)
		if err != nil {
			return err
		}
		if !ok {
			cur = nil
		}
		if err := checkRewrap(k, cur, old, keyring, machineID, name); err != nil {
			return err
		}
		tx.put(key, new)
		return nil
	})
}

// SecretMachines implements KeyringStore: one keys-only range read.
func (s *Etcd) SecretMachines(ctx context.Context) ([]string, error) {
	prefix := s.keys.prefix + "secrets/"
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	resp, err := s.client.Get(rctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, unavailable(ctx, fmt.Errorf("etcd range: %w", err))
	}
	var ids []string
	for _, e := range resp.Kvs {
		id, _, ok := strings.Cut(strings.TrimPrefix(string(e.Key), prefix), "/")
		if ok && (len(ids) == 0 || ids[len(ids)-1] != id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
