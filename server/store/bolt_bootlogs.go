package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxBootLogs is how many boot logs a machine keeps, newest last.
const MaxBootLogs = 5

// MaxBootLogSize bounds one stored log (its tail is kept).
const MaxBootLogSize = 64 << 10

// BootLog is the log an agent sent for one boot, after the server removed
// any secret value of the machine from it. It is bookkeeping: storing it
// leaves the machine's Version alone.
type BootLog struct {
	Time   time.Time `json:"time"`
	Remote string    `json:"remote,omitempty"` // the agent's tunnel address
	Failed string    `json:"failed,omitempty"` // the step that failed, if one did
	Error  string    `json:"error,omitempty"`
	Log    string    `json:"log"`
}

// PutBootLog appends l to machine id's boot logs, keeping the newest
// MaxBootLogs; a log longer than MaxBootLogSize keeps its tail. It fails
// with ErrNotFound when the machine does not exist.
func (db *DB) PutBootLog(ctx context.Context, id string, l BootLog) error {
	if err := checkID(id); err != nil {
		return err
	}
	if n := len(l.Log) - MaxBootLogSize; n > 0 {
		l.Log = l.Log[n:]
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMachines).Get([]byte(id)) == nil {
			return fmt.Errorf("boot log of machine %s: %w", id, ErrNotFound)
		}
		logs, err := bootLogs(tx, id)
		if err != nil {
			return err
		}
		logs = append(logs, l)
		if n := len(logs) - MaxBootLogs; n > 0 {
			logs = logs[n:]
		}
		buf, err := json.Marshal(logs)
		if err != nil {
			return fmt.Errorf("encode boot logs: %w", err)
		}
		return tx.Bucket(bucketBootLogs).Put([]byte(id), buf)
	})
}

// BootLogs returns machine id's stored boot logs, oldest first (none: an
// empty list).
func (db *DB) BootLogs(ctx context.Context, id string) ([]BootLog, error) {
	var out []BootLog
	err := db.view(ctx, func(tx *bolt.Tx) (err error) {
		out, err = bootLogs(tx, id)
		return err
	})
	return out, err
}

func bootLogs(tx *bolt.Tx, id string) ([]BootLog, error) {
	v := tx.Bucket(bucketBootLogs).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var logs []BootLog
	if err := json.Unmarshal(v, &logs); err != nil {
		return nil, fmt.Errorf("boot logs of machine %s: %w: %v", id, ErrCorrupt, err)
	}
	return logs, nil
}
