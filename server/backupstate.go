package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sealroot/sealroot/server/backup"
	"github.com/sealroot/sealroot/server/store"
)

// errNoLocalStore is returned by a backup of a server whose state is in
// etcd: the state directory holds only this server's keys.
var errNoLocalStore = errors.New("no local state database")

// backup writes a backup of the state directory while the server runs
// (package backup says what it holds; it holds the keys), with the
// machines' roots when withRoots: each held by the root registry while
// it is copied. A server whose state is in etcd has no state database to
// copy: etcd is backed up with etcdctl snapshot save.
func (s *Server) backup(ctx context.Context, w io.Writer, withRoots bool) error {
	db, ok := s.store.(backup.DB)
	if !ok {
		return fmt.Errorf("backup: the state store is on etcd: back it up with etcdctl snapshot save; %w", errNoLocalStore)
	}
	cfg := backup.Config{StateDir: s.cfg.StateDir, DB: db, SchemaVersion: store.SchemaVersion, Now: time.Now()}
	if withRoots {
		cfg.Roots = s.roots
	}
	m, err := backup.Write(ctx, w, cfg)
	if err != nil {
		s.logger.Error("backup failed", "error", err)
		return err
	}
	s.logger.Info("backup written", "files", len(m.Files)+1, "roots", len(m.Roots), "skipped", len(m.Skipped), "bases", len(m.Bases))
	for _, sk := range m.Skipped {
		s.logger.Warn("backup left a machine's roots out", "machine", sk.Machine, "reason", sk.Reason)
	}
	return nil
}
