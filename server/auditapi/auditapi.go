// Package auditapi serves the admin API's audit queries: `sealroot audit`
// from the audit log file, `sealroot events` from the live bus.
package auditapi

import (
	"context"
	"errors"
	"strings"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/events"
	"github.com/sealroot/sealroot/server/machines"
)

// Service answers `sealroot audit` from the audit log file and
// `sealroot events` from the live bus the log publishes to.
type Service struct {
	Path     string            // the audit log
	Bus      *events.Bus       // the decisions as the log records them
	Machines *machines.Manager // resolves the MACHINE argument
}

var _ api.AuditService = (*Service)(nil)

func (s *Service) Audit(ctx context.Context, q api.AuditQuery) ([]*api.AuditEntry, error) {
	match, err := s.matcher(ctx, q.Machine)
	if err != nil {
		return nil, err
	}
	all, err := audit.ReadAll(s.Path)
	if err != nil {
		return nil, err
	}
	var out []*api.AuditEntry
	for _, e := range all {
		if match(e.MachineID) && !e.Time.Before(q.Since) {
			out = append(out, viewEntry(e))
		}
	}
	return out, nil
}

func (s *Service) Events(ctx context.Context, q api.AuditQuery, fn func(*api.AuditEntry) error) error {
	match, err := s.matcher(ctx, q.Machine)
	if err != nil {
		return err
	}
	sub := s.Bus.Subscribe()
	defer s.Bus.Unsubscribe(sub)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-sub.C():
			if !ok {
				return sub.Err()
			}
			if !match(e.MachineID) {
				continue
			}
			if err := fn(viewEntry(e)); err != nil {
				return err
			}
		}
	}
}

// matcher returns a filter on machine IDs for the MACHINE argument ref:
// the machine it names, or, for a machine no longer enrolled, the IDs
// that start with ref (at least 8 hex digits).
func (s *Service) matcher(ctx context.Context, ref string) (func(id string) bool, error) {
	if ref == "" {
		return func(string) bool { return true }, nil
	}
	m, err := s.Machines.Resolve(ctx, ref)
	if err == nil {
		return func(id string) bool { return id == m.ID }, nil
	}
	prefix := strings.ToLower(ref)
	if !errors.Is(err, api.ErrNotFound) || len(prefix) < 8 || strings.Trim(prefix, "0123456789abcdef") != "" {
		return nil, err
	}
	return func(id string) bool { return strings.HasPrefix(id, prefix) }, nil
}

func viewEntry(e audit.Entry) *api.AuditEntry {
	return &api.AuditEntry{
		Time:      e.Time,
		Actor:     e.Actor,
		Remote:    e.Remote,
		MachineID: e.MachineID,
		Action:    e.Action,
		Outcome:   e.Outcome,
		Check:     e.Check,
		Reason:    e.Reason,
	}
}
