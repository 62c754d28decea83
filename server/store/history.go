package store

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Boot history layout (schema 6): bucket "history" holds one value per
// machine ID, the machine's last MaxHistory attempts in a compact binary
// form (history_codec.go). Appending an attempt encodes that attempt
// alone and rewrites the machine's value (about 1.5 KB): the machine
// record and its seen record are not written, and the histories of a
// room of booting machines share leaf pages, so a batch of attempts
// dirties a few pages instead of a bucket per machine.

// MachineAttempt is one attempt for AddAttempts.
type MachineAttempt struct {
	MachineID string
	Attempt   BootAttempt
}

// AddAttempts adds each attempt to its machine's History in time order
// (appendHistory), keeping the last MaxHistory, in a transaction shared
// with concurrent updates (one fsync for all). History is bookkeeping: no
// Version changes and no other field is written. It returns the attempts
// of machines the store does not hold (not written).
func (db *DB) AddAttempts(ctx context.Context, attempts []MachineAttempt) ([]MachineAttempt, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var unknown []MachineAttempt
	err := db.commits.update(func(tx *bolt.Tx) error {
		unknown = unknown[:0]
		machines := tx.Bucket(bucketMachines)
		for _, a := range attempts {
			if checkID(a.MachineID) != nil || machines.Get([]byte(a.MachineID)) == nil {
				unknown = append(unknown, a)
				continue
			}
			if err := db.appendHistory(tx, a.MachineID, a.Attempt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("add boot attempts: %w", err)
	}
	return unknown, nil
}

// appendHistory adds a to machine id's history after every attempt not
// later than it (so attempts written late, as the Recorder's batches
// are, keep the order they were decided in) and drops the oldest
// attempts beyond MaxHistory.
func (db *DB) appendHistory(tx *bolt.Tx, id string, a BootAttempt) error {
	hist := tx.Bucket(bucketHistory)
	old := hist.Get([]byte(id))
	at, n, err := attemptPlace(old, a.Time)
	if err != nil {
		return fmt.Errorf("machine %s: history: %w: %v", id, ErrCorrupt, err)
	}
	head, tail := old[:at], old[at:]
	drop := n + 1 - MaxHistory // oldest first: from head, then a, then tail
	for ; drop > 0 && len(head) > 0; drop-- {
		_, head, _ = nextAttempt(head)
	}
	if drop > 0 { // a is older than every attempt kept
		return nil
	}
	v := make([]byte, len(head), len(head)+attemptSizeHint+len(tail))
	copy(v, head) // bbolt keeps v until the commit: never reuse it
	if v, err = appendAttempt(v, a); err != nil {
		return fmt.Errorf("machine %s: %w", id, err)
	}
	v = append(v, tail...)
	if err := hist.Put([]byte(id), v); err != nil {
		return fmt.Errorf("machine %s: history: %w", id, err)
	}
	return nil
}

// insertAttempt is appendHistory on a decoded history (the etcd store's):
// a goes after every attempt not later than it, and the oldest beyond
// MaxHistory are dropped. h is reused.
func insertAttempt(h []BootAttempt, a BootAttempt) []BootAttempt {
	i := len(h)
	for i > 0 && h[i-1].Time.After(a.Time) {
		i--
	}
	h = slices.Insert(h, i, a)
	return h[max(0, len(h)-MaxHistory):]
}

// attemptSizeHint is room for one encoded attempt of a usual size.
const attemptSizeHint = 128

// replaceHistory makes h machine id's history (its last MaxHistory).
func (db *DB) replaceHistory(tx *bolt.Tx, id string, h []BootAttempt) error {
	h = h[max(0, len(h)-MaxHistory):]
	if len(h) == 0 {
		return deleteHistory(tx, id)
	}
	v := make([]byte, 0, len(h)*attemptSizeHint)
	for _, a := range h {
		var err error
		if v, err = appendAttempt(v, a); err != nil {
			return fmt.Errorf("machine %s: %w", id, err)
		}
	}
	if err := tx.Bucket(bucketHistory).Put([]byte(id), v); err != nil {
		return fmt.Errorf("machine %s: history: %w", id, err)
	}
	return nil
}

// deleteHistory removes machine id's history.
func deleteHistory(tx *bolt.Tx, id string) error {
	if err := tx.Bucket(bucketHistory).Delete([]byte(id)); err != nil {
		return fmt.Errorf("machine %s: delete history: %w", id, err)
	}
	return nil
}

// loadHistory returns machine id's history, oldest first.
func (db *DB) loadHistory(tx *bolt.Tx, id string) ([]BootAttempt, error) {
	v := tx.Bucket(bucketHistory).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	h, err := db.history.decode(id, v)
	if err != nil {
		return nil, fmt.Errorf("machine %s: history: %w: %v", id, ErrCorrupt, err)
	}
	return h, nil
}

// historyCache keeps histories decoded, each with a digest of the value
// it was decoded from (as machineCache does): a hit needs the value read
// in the current transaction to match, so it needs no invalidation.
// Listing machines then decodes only the histories that changed.
type historyCache struct {
	seeds [2]maphash.Seed

	mu sync.Mutex // guards m
	m  map[string]cachedHistory
}

type cachedHistory struct {
	sum recordSum
	h   []BootAttempt // never handed out: callers get copies
}

func newHistoryCache() *historyCache {
	return &historyCache{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, m: map[string]cachedHistory{}}
}

// decode returns the attempts of history value v of machine id.
func (c *historyCache) decode(id string, v []byte) ([]BootAttempt, error) {
	sum := recordSum{maphash.Bytes(c.seeds[0], v), maphash.Bytes(c.seeds[1], v)}
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && e.sum == sum {
		return cloneHistory(e.h), nil
	}
	h, err := decodeAttempts(v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[id] = cachedHistory{sum, cloneHistory(h)}
	c.mu.Unlock()
	return h, nil
}

// cloneHistory copies h and the stage timings of its attempts.
func cloneHistory(h []BootAttempt) []BootAttempt {
	h = slices.Clone(h)
	for i := range h {
		h[i].Stages = slices.Clone(h[i].Stages)
	}
	return h
}

// historyChanged reports whether an update changed m's history.
func historyChanged(before, m *Machine) bool {
	return !slices.EqualFunc(before.History, m.History, func(a, b BootAttempt) bool {
		return a.Time.Equal(b.Time) && a.Time.Location() == b.Time.Location() && a.Server == b.Server && a.Remote == b.Remote &&
			a.Outcome == b.Outcome && a.Check == b.Check && a.Reason == b.Reason && a.AgentVersion == b.AgentVersion &&
			a.Duration == b.Duration && slices.Equal(a.Stages, b.Stages) && a.Failed == b.Failed && a.Error == b.Error
	})
}

// migrateHistory (schema 3 to 4) moves each machine's history into
// bucket history: from its seen record, which overrides the machine
// record, or from the machine record when it has no seen record.
func (db *DB) migrateHistory(tx *bolt.Tx) error {
	type legacy struct {
		History []BootAttempt `json:"history"`
	}
	seenB := tx.Bucket(bucketSeen)
	var ids []string
	err := tx.Bucket(bucketMachines).ForEach(func(k, _ []byte) error {
		ids = append(ids, string(k))
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		var l legacy
		v := seenB.Get([]byte(id))
		if v == nil {
			v = tx.Bucket(bucketMachines).Get([]byte(id))
		}
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("machine %s: %w: %v", id, ErrCorrupt, err)
		}
		if err := db.replaceHistory(tx, id, l.History); err != nil {
			return err
		}
		if sv := seenB.Get([]byte(id)); sv != nil { // rewritten without history
			var s seen
			if err := json.Unmarshal(sv, &s); err != nil {
				return fmt.Errorf("machine %s: seen: %w: %v", id, ErrCorrupt, err)
			}
			buf, err := json.Marshal(s)
			if err != nil {
				return err
			}
			if err := seenB.Put([]byte(id), buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// migrateHistoryValues (schema 5 to 6) turns each machine's history
// bucket (8-byte sequence -> JSON BootAttempt) into one value of the
// attempts in the compact form, in the same order.
func (db *DB) migrateHistoryValues(tx *bolt.Tx) error {
	hist := tx.Bucket(bucketHistory)
	var ids [][]byte
	err := hist.ForEach(func(k, v []byte) error {
		if v == nil { // a bucket: schema 5
			ids = append(ids, slices.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		var h []BootAttempt
		err := hist.Bucket(id).ForEach(func(_, v []byte) error {
			var a BootAttempt
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("machine %s: history: %w: %v", id, ErrCorrupt, err)
			}
			h = append(h, a)
			return nil
		})
		if err != nil {
			return err
		}
		if err := hist.DeleteBucket(id); err != nil {
			return fmt.Errorf("machine %s: history: %w", id, err)
		}
		if err := db.replaceHistory(tx, string(id), h); err != nil {
			return err
		}
	}
	return nil
}
