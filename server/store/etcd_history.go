package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// The etcd store keeps a machine's History under <p>history/<id> as one
// JSON list of its last MaxHistory attempts, apart from the record, so an
// attempt rewrites neither the record nor its seen fields.

func (k etcdKeys) history(id string) string { return k.prefix + "history/" + id }

// attemptsPerTxn bounds the machines whose attempts go into one etcd
// transaction: each costs two compares and one put, and etcd allows 128
// of each per transaction.
const attemptsPerTxn = 40

// AddAttempts implements Store: every machine's attempts are appended in
// one transaction (a batch of many machines is split between
// transactions of attemptsPerTxn machines, each attempt still decided
// against its machine's current history); attempts of unknown machines
// are returned, not written.
func (s *Etcd) AddAttempts(ctx context.Context, attempts []MachineAttempt) ([]MachineAttempt, error) {
	var unknown []MachineAttempt
	for len(attempts) > 0 {
		n, ids := 0, map[string]bool{}
		for ; n < len(attempts); n++ {
			id := attempts[n].MachineID
			if !ids[id] && len(ids) == attemptsPerTxn {
				break
			}
			ids[id] = true
		}
		u, err := s.addAttempts(ctx, attempts[:n])
		if err != nil {
			return nil, fmt.Errorf("add boot attempts: %w", err)
		}
		unknown = append(unknown, u...)
		attempts = attempts[n:]
	}
	return unknown, nil
}

func (s *Etcd) addAttempts(ctx context.Context, attempts []MachineAttempt) ([]MachineAttempt, error) {
	var unknown []MachineAttempt
	err := s.txn(ctx, func(tx *etcdTx) error {
		unknown = unknown[:0]
		for _, a := range attempts {
			if checkID(a.MachineID) != nil {
				unknown = append(unknown, a)
				continue
			}
			if _, ok, err := tx.get(s.keys.machine(a.MachineID)); err != nil {
				return err
			} else if !ok {
				unknown = append(unknown, a)
				continue
			}
			if err := s.addHistory(tx, a.MachineID, a.Attempt); err != nil {
				return err
			}
		}
		return nil
	})
	return unknown, err
}

// addHistory adds attempts to machine id's stored history in tx, each
// after every attempt not later than it (insertAttempt).
func (s *Etcd) addHistory(tx *etcdTx, id string, attempts ...BootAttempt) error {
	m := &Machine{}
	if err := s.loadHistory(tx, id, m); err != nil {
		return err
	}
	for _, a := range attempts {
		m.History = insertAttempt(m.History, a)
	}
	return s.putHistory(tx, id, m.History)
}

func (s *Etcd) loadHistory(tx *etcdTx, id string, m *Machine) error {
	v, ok, err := tx.get(s.keys.history(id))
	if err != nil || !ok {
		return err
	}
	if err := json.Unmarshal(v, &m.History); err != nil {
		return fmt.Errorf("machine %s: history: %w: %v", id, ErrCorrupt, err)
	}
	return nil
}

func (s *Etcd) putHistory(tx *etcdTx, id string, h []BootAttempt) error {
	if len(h) == 0 {
		tx.del(s.keys.history(id))
		return nil
	}
	if n := len(h) - MaxHistory; n > 0 {
		h = h[n:]
	}
	v, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("machine %s: encode history: %w", id, err)
	}
	tx.put(s.keys.history(id), v)
	return nil
}
