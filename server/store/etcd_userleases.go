package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The etcd store keeps user-root leases under <p>userleases/<user>, as
// bbolt's userleases bucket; every lease change is one transaction with
// the machine change it goes with.

var _ LeaseStore = (*Etcd)(nil)

func (k etcdKeys) userLeases() string           { return k.prefix + "userleases/" }
func (k etcdKeys) userLease(user string) string { return k.userLeases() + user }

func (s *Etcd) getLease(tx *etcdTx, user string) (*UserLease, error) {
	v, ok, err := tx.get(s.keys.userLease(user))
	if err != nil || !ok {
		return nil, err
	}
	var l UserLease
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, fmt.Errorf("lease of user %s: %w: %v", user, ErrCorrupt, err)
	}
	return &l, nil
}

func (s *Etcd) putLease(tx *etcdTx, l *UserLease) error {
	v, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("lease of user %s: %w", l.User, err)
	}
	tx.put(s.keys.userLease(l.User), v)
	return nil
}

// freeMachineLeases deletes machineID's leases of users other than keep.
// The scan makes a lease another server writes meanwhile fail the commit.
func (s *Etcd) freeMachineLeases(tx *etcdTx, machineID, keep string) error {
	kvs, err := tx.scan(s.keys.userLeases())
	if err != nil {
		return err
	}
	for _, e := range kvs {
		var l UserLease
		if err := json.Unmarshal(e.value, &l); err != nil {
			return fmt.Errorf("lease %s: %w: %v", e.key, ErrCorrupt, err)
		}
		if l.MachineID == machineID && strings.TrimPrefix(e.key, s.keys.userLeases()) != keep {
			// Read the key itself, so a concurrent change of this
			// lease (a delete included) fails the commit.
			if _, _, err := tx.get(e.key); err != nil {
				return err
			}
			tx.del(e.key)
		}
	}
	return nil
}

// ClaimUserLease implements LeaseStore.
func (s *Etcd) ClaimUserLease(ctx context.Context, user, machineID, claim string, now time.Time) error {
	if err := checkUserKey(user); err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		l, err := s.getLease(tx, user)
		if err != nil {
			return err
		}
		if l != nil && l.MachineID != machineID {
			return &LeaseHeldError{Lease: *l}
		}
		if err := s.freeMachineLeases(tx, machineID, user); err != nil {
			return err
		}
		return s.putLease(tx, &UserLease{User: user, MachineID: machineID, Since: now, Claim: claim})
	})
}

// ReleaseWithLease implements LeaseStore: the machine update, the lease's
// confirmation and the freeing of the machine's other leases are one
// transaction.
func (s *Etcd) ReleaseWithLease(ctx context.Context, id, user, claim string, fn func(*Machine) error) (*Machine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var out *Machine
	err := s.txn(ctx, func(tx *etcdTx) error {
		m, err := s.updateMachine(tx, id, true, fn)
		if err != nil {
			return err
		}
		if user != "" {
			l, err := s.getLease(tx, user)
			switch {
			case err != nil:
				return err
			case l == nil:
				return fmt.Errorf("user %s: %w", user, ErrLeaseFreed)
			case l.MachineID != id || l.Claim != claim:
				return &LeaseHeldError{Lease: *l}
			}
			l.Exchange, l.Claim, l.Boot = l.Claim, "", m.BootCount
			if err := s.putLease(tx, l); err != nil {
				return err
			}
		}
		if err := s.freeMachineLeases(tx, id, user); err != nil {
			return err
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
func (s *Etcd) UserLease(ctx context.Context, user string) (*UserLease, error) {
	if err := checkUserKey(user); err != nil {
		return nil, err
	}
	var out *UserLease
	err := s.view(ctx, func(tx *etcdTx) (err error) {
		out, err = s.getLease(tx, user)
		return err
	})
	if err == nil && out == nil {
		err = fmt.Errorf("lease of user %s: %w", user, ErrNotFound)
	}
	return out, err
}

// UserLeases implements LeaseStore; sorted by user, as the keys are.
func (s *Etcd) UserLeases(ctx context.Context) ([]*UserLease, error) {
	var out []*UserLease
	err := s.view(ctx, func(tx *etcdTx) error {
		kvs, err := tx.scan(s.keys.userLeases())
		for _, e := range kvs {
			var l UserLease
			if err := json.Unmarshal(e.value, &l); err != nil {
				return fmt.Errorf("lease %s: %w: %v", e.key, ErrCorrupt, err)
			}
			out = append(out, &l)
		}
		return err
	})
	return out, err
}

// FreeUserLease implements LeaseStore.
func (s *Etcd) FreeUserLease(ctx context.Context, user, claim string) (*UserLease, error) {
	if err := checkUserKey(user); err != nil {
		return nil, err
	}
	var out *UserLease
	err := s.txn(ctx, func(tx *etcdTx) error {
		l, err := s.getLease(tx, user)
		if err != nil {
			return err
		}
		if l == nil || (claim != "" && l.Claim != claim) {
			return fmt.Errorf("lease of user %s: %w", user, ErrNotFound)
		}
		out = l
		tx.del(s.keys.userLease(user))
		return nil
	})
	return out, err
}

// FreeLetGoLease implements LeaseStore.
func (s *Etcd) FreeLetGoLease(ctx context.Context, user, machineID, exchange string) (*UserLease, error) {
	if err := checkUserKey(user); err != nil {
		return nil, err
	}
	var out *UserLease
	err := s.txn(ctx, func(tx *etcdTx) error {
		l, err := s.getLease(tx, user)
		switch {
		case err != nil:
			return err
		case l == nil:
			return fmt.Errorf("lease of user %s: %w", user, ErrNotFound)
		case l.MachineID != machineID || l.Claim != "" || exchange == "" || l.Exchange != exchange:
			return &LeaseHeldError{Lease: *l}
		}
		out = l
		tx.del(s.keys.userLease(user))
		return nil
	})
	return out, err
}
