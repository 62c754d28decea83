package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Boot history layout: bucket "history" holds a bucket per machine ID,
// whose keys are 8-byte big-endian sequence numbers (oldest first) and
// whose values are JSON BootAttempts. Appending an attempt writes that
// attempt alone (about 250 bytes): neither the machine record nor its
// seen record, nor the attempts before it, are encoded again, so the
// history of a whole room of booting machines costs one small put each.

// MachineAttempt is one attempt for AddAttempts.
type MachineAttempt struct {
	MachineID string
	Attempt   BootAttempt
}

// AddAttempts appends each attempt to its machine's History, keeping the
// last MaxHistory, in a transaction shared with concurrent updates (one
// fsync for all). History is bookkeeping: no Version changes and no other
// field is written. It returns the attempts of machines the store does
// not hold (not written).
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

// appendHistory appends a to machine id's history and drops the oldest
// attempts beyond MaxHistory.
func (db *DB) appendHistory(tx *bolt.Tx, id string, a BootAttempt) error {
	b, err := tx.Bucket(bucketHistory).CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return fmt.Errorf("machine %s: history: %w", id, err)
	}
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("machine %s: history: %w", id, err)
	}
	v, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("machine %s: encode attempt: %w", id, err)
	}
	if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
		return fmt.Errorf("machine %s: history: %w", id, err)
	}
	return db.trimHistory(b, id)
}

// trimHistory deletes the oldest attempts of b beyond MaxHistory.
func (db *DB) trimHistory(b *bolt.Bucket, id string) error {
	n := 0
	c := b.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		n++
	}
	for k, _ := c.First(); k != nil && n > MaxHistory; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("machine %s: trim history: %w", id, err)
		}
		db.history.remove(id, k)
		n--
	}
	return nil
}

// replaceHistory makes h machine id's history (its last MaxHistory).
func (db *DB) replaceHistory(tx *bolt.Tx, id string, h []BootAttempt) error {
	if err := deleteHistory(tx, id); err != nil {
		return err
	}
	for _, a := range h[max(0, len(h)-MaxHistory):] {
		if err := db.appendHistory(tx, id, a); err != nil {
			return err
		}
	}
	return nil
}

// deleteHistory removes machine id's history.
func deleteHistory(tx *bolt.Tx, id string) error {
	hist := tx.Bucket(bucketHistory)
	if hist.Bucket([]byte(id)) == nil {
		return nil
	}
	if err := hist.DeleteBucket([]byte(id)); err != nil {
		return fmt.Errorf("machine %s: delete history: %w", id, err)
	}
	return nil
}

// loadHistory returns machine id's history, oldest first.
func (db *DB) loadHistory(tx *bolt.Tx, id string) ([]BootAttempt, error) {
	b := tx.Bucket(bucketHistory).Bucket([]byte(id))
	if b == nil {
		return nil, nil
	}
	out := make([]BootAttempt, 0, MaxHistory)
	err := b.ForEach(func(k, v []byte) error {
		a, err := db.history.decode(id, k, v)
		if err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// historyCache keeps attempts decoded, each with a digest of the bytes it
// was decoded from (as machineCache does): a hit needs the stored bytes
// read in the current transaction to match, so it needs no invalidation.
// Reading a machine then decodes none of its twenty attempts again.
type historyCache struct {
	seeds [2]maphash.Seed

	mu sync.Mutex // guards m
	m  map[attemptKey]cachedAttempt
}

// attemptKey names one stored attempt: its machine and sequence key.
type attemptKey struct {
	id  string
	seq uint64
}

type cachedAttempt struct {
	sum recordSum
	a   BootAttempt // never handed out: callers get copies
}

func newHistoryCache() *historyCache {
	return &historyCache{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, m: map[attemptKey]cachedAttempt{}}
}

func (c *historyCache) decode(id string, k, v []byte) (BootAttempt, error) {
	key := attemptKey{id, seqOf(k)}
	sum := recordSum{maphash.Bytes(c.seeds[0], v), maphash.Bytes(c.seeds[1], v)}
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && e.sum == sum {
		a := e.a
		a.Stages = slices.Clone(a.Stages)
		return a, nil
	}
	var a BootAttempt
	if err := json.Unmarshal(v, &a); err != nil {
		return BootAttempt{}, fmt.Errorf("machine %s: history: %w: %v", id, ErrCorrupt, err)
	}
	kept := a
	kept.Stages = slices.Clone(a.Stages)
	c.mu.Lock()
	c.m[key] = cachedAttempt{sum, kept}
	c.mu.Unlock()
	return a, nil
}

func (c *historyCache) remove(id string, k []byte) {
	c.mu.Lock()
	delete(c.m, attemptKey{id, seqOf(k)})
	c.mu.Unlock()
}

// seqOf decodes a history key; a key of another length (never written)
// maps to 0 and merely misses the cache.
func seqOf(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
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
