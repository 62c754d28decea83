package store

import (
	"encoding/json"
	"fmt"
	"reflect"
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
// and history.
func sameRecord(a, b *Machine) bool {
	ac, bc := *a, *b
	seen{}.applyTo(&ac)
	seen{}.applyTo(&bc)
	ac.History, bc.History = nil, nil
	return reflect.DeepEqual(ac, bc)
}

// overlaySeen applies machine id's seen record, if any, to m.
func overlaySeen(tx *bolt.Tx, id string, m *Machine) error {
	v := tx.Bucket(bucketSeen).Get([]byte(id))
	if v == nil {
		return nil
	}
	var s seen
	if err := json.Unmarshal(v, &s); err != nil {
		return fmt.Errorf("machine %s: seen: %w: %v", id, ErrCorrupt, err)
	}
	s.applyTo(m)
	return nil
}

func putSeen(tx *bolt.Tx, id string, m *Machine) error {
	buf, err := json.Marshal(seenOf(m))
	if err != nil {
		return fmt.Errorf("encode seen: %w", err)
	}
	if err := tx.Bucket(bucketSeen).Put([]byte(id), buf); err != nil {
		return fmt.Errorf("put seen: %w", err)
	}
	return nil
}
