package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket layout of user-root leases (created on first use):
//
//	userleases  <user> -> JSON UserLease
var bucketUserLeases = []byte("userleases")

var _ LeaseStore = (*DB)(nil)

func getLease(tx *bolt.Tx, user string) (*UserLease, error) {
	b := tx.Bucket(bucketUserLeases)
	if b == nil {
		return nil, nil
	}
	v := b.Get([]byte(user))
	if v == nil {
		return nil, nil
	}
	var l UserLease
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, fmt.Errorf("lease of user %s: %w", user, err)
	}
	return &l, nil
}

func putLease(tx *bolt.Tx, l *UserLease) error {
	b, err := tx.CreateBucketIfNotExists(bucketUserLeases)
	if err != nil {
		return fmt.Errorf("lease of user %s: %w", l.User, err)
	}
	v, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("lease of user %s: %w", l.User, err)
	}
	return b.Put([]byte(l.User), v)
}

// freeMachineLeases deletes machineID's leases of users other than keep.
func freeMachineLeases(tx *bolt.Tx, machineID, keep string) error {
	b := tx.Bucket(bucketUserLeases)
	if b == nil {
		return nil
	}
	var drop [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var l UserLease
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("lease of user %s: %w", k, err)
		}
		if l.MachineID == machineID && string(k) != keep {
			drop = append(drop, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("free lease of user %s: %w", k, err)
		}
	}
	return nil
}

// ClaimUserLease implements LeaseStore.
func (db *DB) ClaimUserLease(ctx context.Context, user, machineID, claim string, now time.Time) error {
	if err := checkUserKey(user); err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		l, err := getLease(tx, user)
		if err != nil {
			return err
		}
		if l != nil && l.MachineID != machineID {
			return &LeaseHeldError{Lease: *l}
		}
		if err := freeMachineLeases(tx, machineID, user); err != nil {
			return err
		}
		return putLease(tx, &UserLease{User: user, MachineID: machineID, Since: now, Claim: claim})
	})
}

// ReleaseWithLease implements LeaseStore.
func (db *DB) ReleaseWithLease(ctx context.Context, id, user, claim string, fn func(*Machine) error) (*Machine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var out *Machine
	err := db.update(ctx, func(tx *bolt.Tx) error {
		m, before, buf, err := db.applyUpdate(tx, id, true, fn)
		if err != nil {
			return err
		}
		if user != "" {
			l, err := getLease(tx, user)
			switch {
			case err != nil:
				return err
			case l == nil:
				return fmt.Errorf("user %s: %w", user, ErrLeaseFreed)
			case l.MachineID != id || l.Claim != claim:
				return &LeaseHeldError{Lease: *l}
			}
			l.Exchange, l.Claim, l.Boot = l.Claim, "", m.BootCount
			if err := putLease(tx, l); err != nil {
				return err
			}
		}
		if err := freeMachineLeases(tx, id, user); err != nil {
			return err
		}
		if buf != nil {
			if err := putMachine(tx, id, m.Name, before.Name, buf); err != nil {
				return fmt.Errorf("update machine %s: %w", id, err)
			}
			db.cache.put(id, buf, m) // if the commit fails, the digest never matches
		}
		if err := db.putSeen(tx, id, m); err != nil {
			return fmt.Errorf("update machine %s: %w", id, err)
		}
		if historyChanged(before, m) {
			if err := db.replaceHistory(tx, id, m.History); err != nil {
				return fmt.Errorf("update machine %s: %w", id, err)
			}
		}
		out = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UserLease implements LeaseStore.
func (db *DB) UserLease(ctx context.Context, user string) (*UserLease, error) {
	if err := checkUserKey(user); err != nil {
		return nil, err
	}
	var out *UserLease
	err := db.view(ctx, func(tx *bolt.Tx) error {
		l, err := getLease(tx, user)
		out = l
		return err
	})
	if err == nil && out == nil {
		err = fmt.Errorf("lease of user %s: %w", user, ErrNotFound)
	}
	return out, err
}

// UserLeases implements LeaseStore.
func (db *DB) UserLeases(ctx context.Context) ([]*UserLease, error) {
	var out []*UserLease
	err := db.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUserLeases)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var l UserLease
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("lease of user %s: %w", k, err)
			}
			out = append(out, &l)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out, err
}

// FreeUserLease implements LeaseStore.
func (db *DB) FreeUserLease(ctx context.Context, user, claim string) (*UserLease, error) {
	if err := checkUserKey(user); err != nil {
		return nil, err
	}
	var out *UserLease
	err := db.update(ctx, func(tx *bolt.Tx) error {
		l, err := getLease(tx, user)
		if err != nil {
			return err
		}
		if l == nil || (claim != "" && l.Claim != claim) {
			return fmt.Errorf("lease of user %s: %w", user, ErrNotFound)
		}
		out = l
		return tx.Bucket(bucketUserLeases).Delete([]byte(user))
	})
	return out, err
}

// FreeLetGoLease implements LeaseStore.
func (db *DB) FreeLetGoLease(ctx context.Context, user, machineID, exchange string) (*UserLease, error) {
	if err := checkUserKey(user); err != nil {
		return nil, err
	}
	var out *UserLease
	err := db.update(ctx, func(tx *bolt.Tx) error {
		l, err := getLease(tx, user)
		switch {
		case err != nil:
			return err
		case l == nil:
			return fmt.Errorf("lease of user %s: %w", user, ErrNotFound)
		case l.MachineID != machineID || l.Claim != "" || exchange == "" || l.Exchange != exchange:
			return &LeaseHeldError{Lease: *l}
		}
		out = l
		return tx.Bucket(bucketUserLeases).Delete([]byte(user))
	})
	return out, err
}
