package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Machine implements Store.
func (s *Etcd) Machine(ctx context.Context, id string) (*Machine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var m *Machine
	err := s.view(ctx, func(tx *etcdTx) error {
		var err error
		m, err = s.getMachine(tx, id, true)
		return err
	})
	return m, err
}

// MachineRecord implements Store: Machine without the boot history.
func (s *Etcd) MachineRecord(ctx context.Context, id string) (*Machine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var m *Machine
	err := s.view(ctx, func(tx *etcdTx) error {
		var err error
		m, err = s.getMachine(tx, id, false)
		return err
	})
	return m, err
}

// Machines implements Store.
func (s *Etcd) Machines(ctx context.Context) ([]*Machine, error) {
	var out []*Machine
	err := s.view(ctx, func(tx *etcdTx) error {
		recs, err := tx.scan(s.keys.machines())
		if err != nil {
			return err
		}
		seens, err := tx.scan(s.keys.seens())
		if err != nil {
			return err
		}
		groupVersions, err := s.groupVersionsOf(tx)
		if err != nil {
			return err
		}
		seenOf := map[string][]byte{}
		for _, e := range seens {
			seenOf[strings.TrimPrefix(e.key, s.keys.seens())] = e.value
		}
		for _, e := range recs {
			id := strings.TrimPrefix(e.key, s.keys.machines())
			m, err := decodeMachine(id, e.value)
			if err != nil {
				return err
			}
			if err := applySeen(id, seenOf[id], m); err != nil {
				return err
			}
			if v, ok := groupVersions[m.Group]; ok && m.Group != "" {
				if err := raiseVersion(m, m.Group, v); err != nil {
					return err
				}
			}
			if err := s.loadHistory(tx, id, m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// CreateMachine implements Store: ErrExists for a taken ID, ErrNameTaken
// for a name another machine has anywhere in the cluster.
func (s *Etcd) CreateMachine(ctx context.Context, m *Machine) error {
	if m == nil || m.ID == "" || len(m.ID) > maxIDLen || strings.Contains(m.ID, "/") {
		return fmt.Errorf("create machine: invalid machine id")
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		if _, ok, err := tx.get(s.keys.machine(m.ID)); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("create machine %s: %w", m.ID, ErrExists)
		}
		v, err := tx.nextSeq(s.keys.seq())
		if err != nil {
			return fmt.Errorf("create machine %s: %w", m.ID, err)
		}
		m.Version = v
		buf, err := encodeRecord(m)
		if err != nil {
			return fmt.Errorf("create machine %s: encode: %w", m.ID, err)
		}
		if err := s.putHistory(tx, m.ID, m.History); err != nil {
			return err
		}
		if err := s.putMachine(tx, m.ID, m.Name, "", buf); err != nil {
			return fmt.Errorf("create machine %s: %w", m.ID, err)
		}
		return s.putSeen(tx, m)
	})
}

// UpdateMachine implements Store. fn runs on the record read at one
// revision; the write commits only if the machine, its seen record, the
// version counter (when the version changes) and the new name's index
// entry are unchanged since, else fn runs again on the fresh record. So fn
// must be idempotent with no side effects beyond its argument, as for the
// bbolt store. The record returned is the one stored.
func (s *Etcd) UpdateMachine(ctx context.Context, id string, fn func(*Machine) error) (*Machine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return s.updateMachineTxn(ctx, id, true, fn)
}

// UpdateMachineRecord implements Store: UpdateMachine without reading the
// boot history; the attempts fn adds are added to it (addHistory).
func (s *Etcd) UpdateMachineRecord(ctx context.Context, id string, fn func(*Machine) error) (*Machine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return s.updateMachineTxn(ctx, id, false, fn)
}

func (s *Etcd) updateMachineTxn(ctx context.Context, id string, withHistory bool, fn func(*Machine) error) (*Machine, error) {
	var out *Machine
	err := s.txn(ctx, func(tx *etcdTx) (err error) {
		out, err = s.updateMachine(tx, id, withHistory, fn)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// updateMachine applies fn to machine id inside tx and buffers the
// writes: the record (with a new version when a decision-relevant field
// changed), its seen fields and history (when read: withHistory); a
// revoked machine's user-root leases are freed with it.
func (s *Etcd) updateMachine(tx *etcdTx, id string, withHistory bool, fn func(*Machine) error) (*Machine, error) {
	m, err := s.getMachine(tx, id, withHistory)
	if err != nil {
		return nil, err
	}
	before := m.clone()
	if err := fn(m); err != nil {
		return nil, err
	}
	if m.ID != id {
		return nil, fmt.Errorf("update machine %s: the update changed the id to %q", id, m.ID)
	}
	m.Version = before.Version
	if !sameRecord(before, m) {
		if !bytes.Equal(decisionOf(m), decisionOf(before)) {
			if m.Version, err = tx.nextSeq(s.keys.seq()); err != nil {
				return nil, fmt.Errorf("update machine %s: %w", id, err)
			}
		}
		buf, err := encodeRecord(m)
		if err != nil {
			return nil, fmt.Errorf("update machine %s: encode: %w", id, err)
		}
		if err := s.putMachine(tx, id, m.Name, before.Name, buf); err != nil {
			return nil, fmt.Errorf("update machine %s: %w", id, err)
		}
	}
	if err := s.putSeen(tx, m); err != nil {
		return nil, fmt.Errorf("update machine %s: %w", id, err)
	}
	if !withHistory && m.History != nil { // attempts fn added
		if err := s.addHistory(tx, id, m.History...); err != nil {
			return nil, fmt.Errorf("update machine %s: %w", id, err)
		}
		m.History = nil
	}
	if withHistory && historyChanged(before, m) {
		if err := s.putHistory(tx, id, m.History); err != nil {
			return nil, err
		}
	}
	if m.State == StateRevoked { // a revoked machine holds no user's root
		if err := s.freeMachineLeases(tx, id, ""); err != nil {
			return nil, fmt.Errorf("update machine %s: %w", id, err)
		}
	}
	return m, nil
}

// DeleteMachine implements Store: the machine, its seen record, names,
// secrets and files go in one transaction.
func (s *Etcd) DeleteMachine(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		if _, ok, err := tx.get(s.keys.machine(id)); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("delete machine %s: %w", id, ErrNotFound)
		}
		names, err := tx.scan(s.keys.names())
		if err != nil {
			return err
		}
		for _, e := range names {
			if string(e.value) == id {
				tx.del(e.key)
			}
		}
		tx.delPrefix(s.keys.secrets(id))
		tx.delPrefix(s.keys.files([]byte("machine:" + id)))
		if err := s.freeMachineLeases(tx, id, ""); err != nil {
			return err
		}
		tx.del(s.keys.machine(id))
		tx.del(s.keys.seen(id))
		tx.del(s.keys.history(id))
		tx.del(s.keys.bootLogs(id))
		return nil
	})
}

// getMachine reads machine id's record, seen fields and history in one
// round trip (its group's version, when it has a group, in a second).
func (s *Etcd) getMachine(tx *etcdTx, id string, withHistory bool) (*Machine, error) {
	keys := []string{s.keys.machine(id), s.keys.seen(id)}
	if withHistory {
		keys = append(keys, s.keys.history(id))
	}
	vs, err := tx.getAll(keys...)
	if err != nil {
		return nil, err
	}
	if vs[0] == nil {
		return nil, fmt.Errorf("machine %s: %w", id, ErrNotFound)
	}
	m, err := decodeMachine(id, vs[0])
	if err != nil {
		return nil, err
	}
	if err := applySeen(id, vs[1], m); err != nil {
		return nil, err
	}
	if err := s.applyGroupVersion(tx, m); err != nil {
		return nil, err
	}
	if withHistory && vs[2] != nil {
		if err := json.Unmarshal(vs[2], &m.History); err != nil {
			return nil, fmt.Errorf("machine %s: history: %w: %v", id, ErrCorrupt, err)
		}
	}
	return m, nil
}

func applySeen(id string, v []byte, m *Machine) error {
	if v == nil {
		return nil
	}
	var sn seen
	if err := json.Unmarshal(v, &sn); err != nil {
		return fmt.Errorf("machine %s: seen: %w: %v", id, ErrCorrupt, err)
	}
	sn.applyTo(m)
	return nil
}

func (s *Etcd) putSeen(tx *etcdTx, m *Machine) error {
	buf, err := json.Marshal(seenOf(m))
	if err != nil {
		return fmt.Errorf("encode seen: %w", err)
	}
	tx.put(s.keys.seen(m.ID), buf)
	return nil
}

// putMachine stores an encoded machine and moves its name index entry
// from oldName to name; the index entry read makes a concurrent claim of
// the same name by another server fail the commit.
func (s *Etcd) putMachine(tx *etcdTx, id, name, oldName string, buf []byte) error {
	if name != oldName && name != "" {
		owner, ok, err := tx.get(s.keys.name(name))
		if err != nil {
			return err
		}
		if ok && string(owner) != id {
			return fmt.Errorf("name %q: %w (machine %s)", name, ErrNameTaken, owner)
		}
	}
	if name != oldName && oldName != "" {
		owner, _, err := tx.get(s.keys.name(oldName))
		if err != nil {
			return err
		}
		if string(owner) == id {
			tx.del(s.keys.name(oldName))
		}
	}
	if name != "" {
		tx.put(s.keys.name(name), []byte(id))
	}
	tx.put(s.keys.machine(id), buf)
	return nil
}

// bumpVersion gives machine id a new version inside tx.
func (s *Etcd) bumpVersion(tx *etcdTx, id string) error {
	v, ok, err := tx.get(s.keys.machine(id))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("machine %s: %w", id, ErrNotFound)
	}
	m, err := decodeMachine(id, v)
	if err != nil {
		return err
	}
	if m.Version, err = tx.nextSeq(s.keys.seq()); err != nil {
		return err
	}
	buf, err := encodeRecord(m)
	if err != nil {
		return fmt.Errorf("machine %s: encode: %w", id, err)
	}
	tx.put(s.keys.machine(id), buf)
	return nil
}

// groupMembers returns the IDs of the machines in group name.
func (s *Etcd) groupMembers(tx *etcdTx, name string) ([]string, error) {
	recs, err := tx.scan(s.keys.machines())
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range recs {
		var m struct {
			Group string `json:"group"`
		}
		if err := json.Unmarshal(e.value, &m); err != nil {
			return nil, fmt.Errorf("%w: machine record: %v", ErrCorrupt, err)
		}
		if m.Group == name {
			ids = append(ids, strings.TrimPrefix(e.key, s.keys.machines()))
		}
	}
	return ids, nil
}

// MachineVersion implements Store: one read of the machine record.
func (s *Etcd) MachineVersion(ctx context.Context, id string) (State, uint64, error) {
	if err := checkID(id); err != nil {
		return "", 0, err
	}
	var m Machine
	err := s.view(ctx, func(tx *etcdTx) error {
		v, ok, err := tx.get(s.keys.machine(id))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("machine %s: %w", id, ErrNotFound)
		}
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("machine %s: %w: %v", id, ErrCorrupt, err)
		}
		return s.applyGroupVersion(tx, &m)
	})
	return m.State, m.Version, err
}
