package store

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bucket layout of users (created on first use):
//
//	users  <name> -> JSON User
var bucketUsers = []byte("users")

var _ UserStore = (*DB)(nil)

func checkUserKey(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("user name of %d bytes: %w", len(name), ErrNotFound)
	}
	return nil
}

// PutUser implements UserStore.
func (db *DB) PutUser(ctx context.Context, u *User, create bool) error {
	if err := checkUserKey(u.Name); err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketUsers)
		if err != nil {
			return fmt.Errorf("put user %s: %w", u.Name, err)
		}
		old := b.Get([]byte(u.Name))
		v, err := userRecord(u, old, old != nil, create)
		if err != nil {
			return err
		}
		return b.Put([]byte(u.Name), v)
	})
}

// User implements UserStore.
func (db *DB) User(ctx context.Context, name string) (*User, error) {
	if err := checkUserKey(name); err != nil {
		return nil, err
	}
	var u *User
	err := db.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		var v []byte
		if b != nil {
			v = b.Get([]byte(name))
		}
		if v == nil {
			return fmt.Errorf("user %s: %w", name, ErrNotFound)
		}
		u = &User{}
		return json.Unmarshal(v, u)
	})
	return u, err
}

// Users implements UserStore.
func (db *DB) Users(ctx context.Context) ([]*User, error) {
	var out []*User
	err := db.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			u := &User{}
			if err := json.Unmarshal(v, u); err != nil {
				return fmt.Errorf("user %s: %w", k, err)
			}
			out = append(out, u)
			return nil
		})
	})
	return out, err
}

// DeleteUser implements UserStore.
func (db *DB) DeleteUser(ctx context.Context, name string) error {
	if err := checkUserKey(name); err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b == nil || b.Get([]byte(name)) == nil {
			return fmt.Errorf("user %s: %w", name, ErrNotFound)
		}
		return b.Delete([]byte(name))
	})
}
