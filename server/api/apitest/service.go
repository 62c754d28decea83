// Package apitest serves the admin API for tests of the API, its client
// and the CLI, backed by the real machine manager (server/machines) over a
// real bbolt store in a temporary directory: machines resolve, refuse and
// audit exactly as they do in sealroot serve.
package apitest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
)

// Service is a machines.Manager over a fresh store, with helpers to look
// behind it. Serve it with api.WithActorFunc(machines.WithActor) to have
// the handler's actor recorded.
type Service struct {
	*machines.Manager
	// Store is the manager's store, for seeding and assertions.
	Store *store.DB

	t         testing.TB
	box       *secrets.Box
	auditLog  *audit.Log
	auditPath string
}

var _ api.Service = (*Service)(nil)

// NewService returns the real machine manager over a new store in a
// temporary directory holding copies of ms, with a new secrets box and an
// audit log. At the end of the test the store is checked (store.DB.Check)
// and closed.
func NewService(t testing.TB, ms ...*store.Machine) *Service {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("store Check: %v", err)
		}
		db.Close()
	})
	box, err := secrets.LoadOrCreate(filepath.Join(dir, "identity"))
	if err != nil {
		t.Fatalf("secrets.LoadOrCreate: %v", err)
	}
	s := &Service{Store: db, t: t, box: box, auditPath: filepath.Join(dir, "audit.log")}
	if s.auditLog, err = audit.Open(s.auditPath); err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	t.Cleanup(func() { s.auditLog.Close() })
	for _, m := range ms {
		c := *m
		if err := db.CreateMachine(context.Background(), &c); err != nil {
			t.Fatalf("CreateMachine %s: %v", m.ID, err)
		}
	}
	s.Manager = machines.New(machines.Config{Store: db, Box: box, Audit: s.auditLog})
	return s
}

// Audit returns the audit entries recorded so far.
func (s *Service) Audit() []audit.Entry {
	s.t.Helper()
	if err := s.auditLog.Sync(); err != nil {
		s.t.Fatalf("audit Sync: %v", err)
	}
	entries, err := audit.ReadAll(s.auditPath)
	if err != nil {
		s.t.Fatalf("audit.ReadAll: %v", err)
	}
	return entries
}

// Actors returns the actor of each audit entry recorded so far.
func (s *Service) Actors() []string {
	s.t.Helper()
	var actors []string
	for _, e := range s.Audit() {
		actors = append(actors, e.Actor)
	}
	return actors
}

// Secret returns the decrypted value of the machine's stored secret, for
// assertions (unaudited); ok is false when there is none.
func (s *Service) Secret(id, name string) (value []byte, ok bool) {
	s.t.Helper()
	ct, err := s.Store.Secret(context.Background(), id, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		s.t.Fatalf("store Secret %s %q: %v", id, name, err)
	}
	if value, err = s.box.Decrypt(ct); err != nil {
		s.t.Fatalf("decrypt secret %q: %v", name, err)
	}
	return value, true
}
