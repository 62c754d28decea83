package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// seen holds the fields of a Machine that every boot changes. They are
// stored apart, in bucket "seen", so recording a boot rewrites about 150
// bytes instead of the whole record with its boot states (about 20 KB):
// with 10,000 machines booting, each commit otherwise wrote a megabyte of
// records that had not changed. A seen record, when present, overrides the
// same fields in the machine record (schema 1 databases have only those).
type seen struct {
	ResetCount   uint32    `json:"reset_count"`
	RestartCount uint32    `json:"restart_count"`
	LastSeen     time.Time `json:"last_seen"`
	LastAddress  string    `json:"last_address,omitempty"`
	BootCount    uint64    `json:"boot_count"`
	// History is kept in bucket history (history.go) since schema 4.
}

func seenOf(m *Machine) seen {
	return seen{m.ResetCount, m.RestartCount, m.LastSeen, m.LastAddress, m.BootCount}
}

func (s seen) applyTo(m *Machine) {
	m.ResetCount, m.RestartCount, m.LastSeen, m.LastAddress, m.BootCount =
		s.ResetCount, s.RestartCount, s.LastSeen, s.LastAddress, s.BootCount
}

// sameRecord reports whether a and b differ at most in their seen fields
// and history. The boot states, most of a record, are compared by
// sameBootState (reflect.DeepEqual over their events cost an attestation
// 30 µs); the rest by reflect.DeepEqual, so a field added to Machine is
// compared without anyone having to remember it.
func sameRecord(a, b *Machine) bool {
	if !sameBootState(a.Approved, b.Approved) || !sameBootState(a.Reported, b.Reported) {
		return false
	}
	ac, bc := *a, *b
	seen{}.applyTo(&ac)
	seen{}.applyTo(&bc)
	ac.History, bc.History = nil, nil
	ac.Approved, bc.Approved = nil, nil
	ac.Reported, bc.Reported = nil, nil
	return reflect.DeepEqual(ac, bc)
}

// sameBootState is reflect.DeepEqual(a, b) for boot states, without
// reflection. TestSameBootStateCoversFields fails when BootState or
// eventlog.Event gains a field this does not compare.
func sameBootState(a, b *BootState) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.At != b.At ||
		len(a.PCRs) != len(b.PCRs) || len(a.Events) != len(b.Events) ||
		(a.PCRs == nil) != (b.PCRs == nil) || (a.Events == nil) != (b.Events == nil) {
		return false
	}
	for i, d := range a.PCRs {
		e, ok := b.PCRs[i]
		if !ok || !sameBytes(d, e) {
			return false
		}
	}
	for i := range a.Events {
		x, y := &a.Events[i], &b.Events[i]
		if x.PCR != y.PCR || x.Sequence != y.Sequence || x.Type != y.Type || x.TypeName != y.TypeName ||
			x.Description != y.Description || !sameBytes(x.Digest, y.Digest) {
			return false
		}
	}
	return true
}

// sameBytes is reflect.DeepEqual for byte slices: nil and empty differ.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// overlaySeen applies machine id's seen record, if any, to m.
func (db *DB) overlaySeen(tx *bolt.Tx, id string, m *Machine) error {
	v := tx.Bucket(bucketSeen).Get([]byte(id))
	if v == nil {
		return nil
	}
	s, err := db.seen.decode(id, v)
	if err != nil {
		return err
	}
	s.applyTo(m)
	return nil
}

// seenCache keeps each machine's seen record decoded with the bytes it
// was decoded from (about 150): a hit is a comparison of those bytes
// instead of a JSON decoding (20 µs, read on every attestation).
type seenCache struct {
	mu sync.Mutex
	m  map[string]cachedSeen // by machine ID
}

type cachedSeen struct {
	raw []byte
	s   seen
}

// decode returns the seen record stored as v under id.
func (c *seenCache) decode(id string, v []byte) (seen, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && bytes.Equal(e.raw, v) {
		return e.s, nil
	}
	var s seen
	if err := json.Unmarshal(v, &s); err != nil {
		return seen{}, fmt.Errorf("machine %s: seen: %w: %v", id, ErrCorrupt, err)
	}
	c.put(id, bytes.Clone(v), s)
	return s, nil
}

// put records s as the decoding of raw, which the cache keeps.
func (c *seenCache) put(id string, raw []byte, s seen) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]cachedSeen)
	}
	c.m[id] = cachedSeen{raw: raw, s: s}
	c.mu.Unlock()
}

// putSeen writes m's seen record; the cache learns the bytes written, so
// the next attestation's read hits (if the commit fails, they never match).
func (db *DB) putSeen(tx *bolt.Tx, id string, m *Machine) error {
	s := seenOf(m)
	buf, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode seen: %w", err)
	}
	if err := tx.Bucket(bucketSeen).Put([]byte(id), buf); err != nil {
		return fmt.Errorf("put seen: %w", err)
	}
	// As decoding buf gives it: no monotonic reading, the location that
	// parsing the encoded time picks.
	text, err := s.LastSeen.MarshalText()
	if err != nil {
		return fmt.Errorf("encode seen: %w", err)
	}
	if err := s.LastSeen.UnmarshalText(text); err != nil {
		return fmt.Errorf("encode seen: %w", err)
	}
	db.seen.put(id, buf, s)
	return nil
}
