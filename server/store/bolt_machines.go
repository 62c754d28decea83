package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/sealroot/sealroot/wire"
)

// Machine returns the machine with the given ID, or ErrNotFound.
func (db *DB) Machine(ctx context.Context, id string) (*Machine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var m *Machine
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var err error
		m, err = db.getMachine(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// MachineRecord is Machine without the boot history (History is nil):
// what an attestation decides on, read without decoding and copying the
// last MaxHistory attempts.
func (db *DB) MachineRecord(ctx context.Context, id string) (*Machine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var m *Machine
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var err error
		m, err = db.getRecord(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// MachineVersion returns machine id's State and Version, or ErrNotFound,
// without copying its record.
func (db *DB) MachineVersion(ctx context.Context, id string) (State, uint64, error) {
	if err := checkID(id); err != nil {
		return "", 0, err
	}
	var (
		state   State
		version uint64
	)
	err := db.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMachines).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("machine %s: %w", id, ErrNotFound)
		}
		var err error
		state, version, err = db.cache.stateVersion(id, v)
		return err
	})
	return state, version, err
}

// Machines returns every machine, sorted by ID.
func (db *DB) Machines(ctx context.Context) ([]*Machine, error) {
	var ms []*Machine
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var recs []record
		err := tx.Bucket(bucketMachines).ForEach(func(k, v []byte) error {
			recs = append(recs, record{string(k), v})
			return nil
		})
		if err != nil {
			return err
		}
		if ms, err = db.cache.decodeAll(recs); err != nil {
			return err
		}
		for _, m := range ms {
			if err := db.overlaySeen(tx, m.ID, m); err != nil {
				return err
			}
			if m.History, err = db.loadHistory(tx, m.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ms, nil
}

// CreateMachine stores a new machine. It fails with ErrExists if the ID is
// taken and with ErrNameTaken if another machine has the same non-empty name.
func (db *DB) CreateMachine(ctx context.Context, m *Machine) error {
	if m == nil || m.ID == "" || len(m.ID) > maxIDLen {
		return fmt.Errorf("create machine: invalid machine id")
	}
	err := db.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMachines).Get([]byte(m.ID)) != nil {
			return fmt.Errorf("create machine %s: %w", m.ID, ErrExists)
		}
		v, err := nextVersion(tx)
		if err != nil {
			return fmt.Errorf("create machine %s: %w", m.ID, err)
		}
		m.Version = v
		buf, err := encodeRecord(m)
		if err != nil {
			return fmt.Errorf("create machine %s: encode: %w", m.ID, err)
		}
		if err := putMachine(tx, m.ID, m.Name, "", buf); err != nil {
			return fmt.Errorf("create machine %s: %w", m.ID, err)
		}
		if err := db.putSeen(tx, m.ID, m); err != nil {
			return fmt.Errorf("create machine %s: %w", m.ID, err)
		}
		if err := db.replaceHistory(tx, m.ID, m.History); err != nil {
			return fmt.Errorf("create machine %s: %w", m.ID, err)
		}
		db.cache.put(m.ID, buf, m) // if the commit fails, the digest never matches
		return nil
	})
	if err == nil {
		db.feed.publish(changeOf(m))
	}
	return err
}

// UpdateMachine loads a machine, calls fn and stores the result atomically.
// fn's error aborts the update and is returned unchanged; fn must not change
// the ID.
//
// Concurrent updates are grouped into one bbolt transaction (and one fsync)
// (groupCommit), so fn may run more than once, each time on a freshly loaded
// copy of the record: it must be idempotent and have no side effects beyond
// changing its argument. The record returned is the one stored.
func (db *DB) UpdateMachine(ctx context.Context, id string, fn func(*Machine) error) (*Machine, error) {
	return db.updateMachine(ctx, id, true, fn)
}

// UpdateMachineRecord is UpdateMachine for an update that does not read
// the boot history, as an attestation's: fn gets the record without it
// (History nil); the attempts fn adds to History are added to the stored
// history in the same transaction (appendHistory), the rest of it stays.
// The record returned has no history.
func (db *DB) UpdateMachineRecord(ctx context.Context, id string, fn func(*Machine) error) (*Machine, error) {
	return db.updateMachine(ctx, id, false, fn)
}

func (db *DB) updateMachine(ctx context.Context, id string, withHistory bool, fn func(*Machine) error) (*Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	var (
		out     *Machine
		fnErr   error // an error that aborts only this update, not the batch
		changed bool  // the record, not only seen fields or history
	)
	err := db.commits.update(func(tx *bolt.Tx) error {
		out, fnErr, changed = nil, nil, false
		m, before, buf, err := db.applyUpdate(tx, id, withHistory, fn)
		if err != nil {
			fnErr = err
			return nil
		}
		old := before.Name
		if buf != nil { // more than the seen fields changed
			if err := putMachine(tx, id, m.Name, old, buf); err != nil {
				if isNameErr(err) { // checked before any write: nothing to undo
					fnErr = fmt.Errorf("update machine %s: %w", id, err)
					return nil
				}
				return err
			}
			db.cache.put(id, buf, m) // if the commit fails, the digest never matches
			changed = true
		}
		if err := db.putSeen(tx, id, m); err != nil {
			return fmt.Errorf("update machine %s: %w", id, err)
		}
		if !withHistory { // attempts fn added, if any
			for _, a := range m.History {
				if err := db.appendHistory(tx, id, a); err != nil {
					return fmt.Errorf("update machine %s: %w", id, err)
				}
			}
			m.History = nil
		}
		if withHistory && historyChanged(before, m) {
			if err := db.replaceHistory(tx, id, m.History); err != nil {
				return fmt.Errorf("update machine %s: %w", id, err)
			}
		}
		if m.State == StateRevoked { // a revoked machine holds no user's root
			if err := freeMachineLeases(tx, id, ""); err != nil {
				return fmt.Errorf("update machine %s: %w", id, err)
			}
		}
		out = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update machine %s: %w", id, err)
	}
	if fnErr != nil {
		return nil, fnErr
	}
	if changed {
		db.feed.publish(changeOf(out))
	}
	return out, nil
}

// applyUpdate loads machine id (with its history if withHistory),
// applies fn and encodes the result. It returns the updated machine, the
// machine before the update and its encoding, which is nil when fn
// changed only seen fields or history. The machine before is for reading
// only: it may share its boot states and keys with the cache (viewRecord),
// so fn gets a deep copy and only one copy is made per update.
func (db *DB) applyUpdate(tx *bolt.Tx, id string, withHistory bool, fn func(*Machine) error) (*Machine, *Machine, []byte, error) {
	before, err := db.viewRecord(tx, id)
	if err != nil {
		return nil, nil, nil, err
	}
	if withHistory {
		if before.History, err = db.loadHistory(tx, id); err != nil {
			return nil, nil, nil, err
		}
	}
	m := before.clone()
	if err := fn(m); err != nil {
		return nil, nil, nil, err
	}
	if m.ID != id {
		return nil, nil, nil, fmt.Errorf("update machine %s: the update changed the id to %q", id, m.ID)
	}
	m.Version = before.Version
	if sameRecord(before, m) {
		return m, before, nil, nil
	}
	if !bytes.Equal(decisionOf(m), decisionOf(before)) {
		if m.Version, err = nextVersion(tx); err != nil {
			return nil, nil, nil, fmt.Errorf("update machine %s: %w", id, err)
		}
	}
	buf, err := encodeRecord(m)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("update machine %s: encode: %w", id, err)
	}
	return m, before, buf, nil
}

// encodeRecord encodes m for bucket machines: without its history, which
// bucket history keeps.
func encodeRecord(m *Machine) ([]byte, error) {
	c := *m
	c.History = nil
	return json.Marshal(&c)
}

// DeleteMachine removes a machine, its name and all its secrets.
func (db *DB) DeleteMachine(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	err := db.update(ctx, func(tx *bolt.Tx) error {
		machines := tx.Bucket(bucketMachines)
		if machines.Get([]byte(id)) == nil {
			return fmt.Errorf("delete machine %s: %w", id, ErrNotFound)
		}
		if err := unindexNames(tx, id); err != nil {
			return fmt.Errorf("delete machine %s: %w", id, err)
		}
		secrets := tx.Bucket(bucketSecrets)
		if secrets.Bucket([]byte(id)) != nil {
			if err := secrets.DeleteBucket([]byte(id)); err != nil {
				return fmt.Errorf("delete machine %s: secrets: %w", id, err)
			}
		}
		if err := deleteFiles(tx, FileOwner{Machine: id}); err != nil {
			return fmt.Errorf("delete machine %s: %w", id, err)
		}
		if err := freeMachineLeases(tx, id, ""); err != nil {
			return fmt.Errorf("delete machine %s: %w", id, err)
		}
		if err := machines.Delete([]byte(id)); err != nil {
			return fmt.Errorf("delete machine %s: %w", id, err)
		}
		if err := tx.Bucket(bucketSeen).Delete([]byte(id)); err != nil {
			return fmt.Errorf("delete machine %s: seen: %w", id, err)
		}
		if err := deleteHistory(tx, id); err != nil {
			return fmt.Errorf("delete machine %s: %w", id, err)
		}
		if err := tx.Bucket(bucketBootLogs).Delete([]byte(id)); err != nil {
			return fmt.Errorf("delete machine %s: boot logs: %w", id, err)
		}
		db.cache.remove(id)
		return nil
	})
	if err == nil {
		db.feed.publish(MachineChange{MachineID: id, Deleted: true})
	}
	return err
}

// decisionOf encodes the fields of m a release or a state change is
// decided on; when they change, so does m.Version.
func decisionOf(m *Machine) []byte {
	buf, _ := json.Marshal(struct {
		State    State
		Policy   Policy
		Approved *BootState
		Root     wire.RootPlan
		Group    string
		Name     string
		Menu     *Menu
	}{m.State, m.Policy, m.Approved, m.Root, m.Group, m.Name, m.Menu})
	return buf // json.Marshal sorts map keys: equal fields, equal bytes
}

// nextVersion returns a machine version never handed out before by this
// database, so a forgotten and re-enrolled machine cannot repeat one.
func nextVersion(tx *bolt.Tx) (uint64, error) {
	v, err := tx.Bucket(bucketMeta).NextSequence()
	if err != nil {
		return 0, fmt.Errorf("next version: %w", err)
	}
	return v, nil
}

// bumpVersion gives machine id a new version: something its releases
// depend on outside its record (its secrets, its group's root) changed.
func (db *DB) bumpVersion(tx *bolt.Tx, id string) error {
	m, err := db.getMachine(tx, id)
	if err != nil {
		return err
	}
	if m.Version, err = nextVersion(tx); err != nil {
		return err
	}
	buf, err := encodeRecord(m)
	if err != nil {
		return fmt.Errorf("machine %s: encode: %w", id, err)
	}
	if err := tx.Bucket(bucketMachines).Put([]byte(id), buf); err != nil {
		return err
	}
	db.cache.put(id, buf, m) // if the commit fails, the digest never matches
	return nil
}

func (db *DB) getMachine(tx *bolt.Tx, id string) (*Machine, error) {
	m, err := db.getRecord(tx, id)
	if err != nil {
		return nil, err
	}
	if m.History, err = db.loadHistory(tx, id); err != nil {
		return nil, err
	}
	return m, nil
}

// getRecord is getMachine without the history.
func (db *DB) getRecord(tx *bolt.Tx, id string) (*Machine, error) {
	v := tx.Bucket(bucketMachines).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("machine %s: %w", id, ErrNotFound)
	}
	m, err := db.cache.decode(id, v)
	if err != nil {
		return nil, err
	}
	if err := db.overlaySeen(tx, id, m); err != nil {
		return nil, err
	}
	return m, nil
}

// viewRecord is getRecord for reading only: a copy of the machine's
// fields (with this transaction's seen fields) that may share everything
// they point to with the cache (machineCache.view). Nothing reachable
// from it may be changed or handed out; clone it for that.
func (db *DB) viewRecord(tx *bolt.Tx, id string) (*Machine, error) {
	v := tx.Bucket(bucketMachines).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("machine %s: %w", id, ErrNotFound)
	}
	shared, _, err := db.cache.view(id, v)
	if err != nil {
		return nil, err
	}
	m := *shared
	if err := db.overlaySeen(tx, id, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func decodeMachine(id string, v []byte) (*Machine, error) {
	m := new(Machine)
	if err := json.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("machine %s: %w: %v", id, ErrCorrupt, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("machine %s: %w: record holds id %q", id, ErrCorrupt, m.ID)
	}
	return m, nil
}

// unindexNames removes every name index entry pointing at id. It scans the
// index rather than trusting the record, which may be corrupt.
func unindexNames(tx *bolt.Tx, id string) error {
	names := tx.Bucket(bucketNames)
	var stale [][]byte
	err := names.ForEach(func(k, v []byte) error {
		if string(v) == id {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan names: %w", err)
	}
	for _, k := range stale {
		if err := names.Delete(k); err != nil {
			return fmt.Errorf("unindex name %q: %w", k, err)
		}
	}
	return nil
}

// nameError marks a name conflict, which aborts one update but not a batch.
type nameError struct{ err error }

func (e nameError) Error() string { return e.err.Error() }
func (e nameError) Unwrap() error { return e.err }

func isNameErr(err error) bool {
	_, ok := err.(nameError)
	return ok
}

// putMachine stores an encoded machine and moves its name index entry from
// oldName to name.
func putMachine(tx *bolt.Tx, id, name, oldName string, buf []byte) error {
	names := tx.Bucket(bucketNames)
	if name != oldName && name != "" {
		if owner := names.Get([]byte(name)); owner != nil && string(owner) != id {
			return nameError{fmt.Errorf("name %q: %w (machine %s)", name, ErrNameTaken, owner)}
		}
	}
	if name != oldName && oldName != "" {
		if owner := names.Get([]byte(oldName)); string(owner) == id {
			if err := names.Delete([]byte(oldName)); err != nil {
				return fmt.Errorf("unindex name %q: %w", oldName, err)
			}
		}
	}
	if name != "" {
		if err := names.Put([]byte(name), []byte(id)); err != nil {
			return fmt.Errorf("index name %q: %w", name, err)
		}
	}
	if err := tx.Bucket(bucketMachines).Put([]byte(id), buf); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return nil
}
