package store

import (
	"context"
	"encoding/json"
	"fmt"
)

func (k etcdKeys) bootLogs(id string) string { return k.prefix + "boot_logs/" + id }

// PutBootLog appends l to machine id's boot logs (the newest
// MaxBootLogs, a long log's tail), as DB.PutBootLog does.
func (s *Etcd) PutBootLog(ctx context.Context, id string, l BootLog) error {
	if err := checkID(id); err != nil {
		return err
	}
	if n := len(l.Log) - MaxBootLogSize; n > 0 {
		l.Log = l.Log[n:]
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		if _, ok, err := tx.get(s.keys.machine(id)); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("boot log of machine %s: %w", id, ErrNotFound)
		}
		logs, err := s.bootLogs(tx, id)
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
		tx.put(s.keys.bootLogs(id), buf)
		return nil
	})
}

// BootLogs returns machine id's stored boot logs, oldest first.
func (s *Etcd) BootLogs(ctx context.Context, id string) ([]BootLog, error) {
	var out []BootLog
	err := s.view(ctx, func(tx *etcdTx) (err error) {
		out, err = s.bootLogs(tx, id)
		return err
	})
	return out, err
}

func (s *Etcd) bootLogs(tx *etcdTx, id string) ([]BootLog, error) {
	v, ok, err := tx.get(s.keys.bootLogs(id))
	if err != nil || !ok {
		return nil, err
	}
	var logs []BootLog
	if err := json.Unmarshal(v, &logs); err != nil {
		return nil, fmt.Errorf("boot logs of machine %s: %w: %v", id, ErrCorrupt, err)
	}
	return logs, nil
}
