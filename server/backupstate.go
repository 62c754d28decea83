package server

import (
	"context"
	"io"
	"time"

	"github.com/sealroot/sealroot/server/backup"
	"github.com/sealroot/sealroot/server/store"
)

// backup writes a backup of the state directory while the server runs
// (package backup says what it holds; it holds the keys), with the
// machines' roots when withRoots: each held by the root registry while
// it is copied.
func (s *Server) backup(ctx context.Context, w io.Writer, withRoots bool) error {
	cfg := backup.Config{StateDir: s.cfg.StateDir, DB: s.store, SchemaVersion: store.SchemaVersion, Now: time.Now()}
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
