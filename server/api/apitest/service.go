// Package apitest provides an in-memory api.Service and a helper that
// serves it on a real Unix socket, for tests of the API, its client and
// the CLI.
package apitest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
)

var secretName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Service is an in-memory api.Service. Machines resolve as the real one
// does: full ID, unique ID prefix of at least 8 hex digits, or name.
// Safe for concurrent use.
type Service struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	machines map[string]*store.Machine        // by ID
	secrets  map[string]map[string][]byte     // by machine ID, name
	actors   []string                         // actor of each mutating call
	actorOf  func(ctx context.Context) string // reads the actor from ctx
}

// NewService returns a Service holding copies of ms. actorOf, if not
// nil, reads the actor the handler put in each mutating call's context.
func NewService(actorOf func(context.Context) string, ms ...*store.Machine) *Service {
	s := &Service{
		machines: map[string]*store.Machine{},
		secrets:  map[string]map[string][]byte{},
		actorOf:  actorOf,
	}
	for _, m := range ms {
		c := *m
		s.machines[m.ID] = &c
	}
	return s
}

// Actors returns the actor recorded for each mutating call so far.
func (s *Service) Actors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.actors)
}

// Secret returns a stored secret value, for assertions.
func (s *Service) Secret(id, name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.secrets[id][name]
	return v, ok
}

// Machines implements api.Service.
func (s *Service) Machines(ctx context.Context) ([]*store.Machine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []*store.Machine
	for _, m := range s.machines {
		c := *m
		ms = append(ms, &c)
	}
	slices.SortFunc(ms, func(a, b *store.Machine) int { return strings.Compare(a.ID, b.ID) })
	return ms, nil
}

// Machine implements api.Service.
func (s *Service) Machine(ctx context.Context, ref string) (*store.Machine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	c := *m
	return &c, nil
}

// Approve implements api.Service.
func (s *Service) Approve(ctx context.Context, ref string, opts api.ApproveOptions) (*store.Machine, error) {
	return s.update(ctx, ref, func(m *store.Machine) error {
		if m.State != store.StatePending && m.State != store.StateNeedsReapproval {
			return fmt.Errorf("machine %s is %s: %w", short(m.ID), m.State, api.ErrConflict)
		}
		if opts.Name != "" {
			m.Name = opts.Name
		}
		if opts.Policy != "" {
			m.Policy = opts.Policy
		}
		m.State, m.Approved, m.Reported, m.Diff = store.StateApproved, m.Reported, nil, ""
		return nil
	})
}

// Revoke implements api.Service.
func (s *Service) Revoke(ctx context.Context, ref, reason string) (*store.Machine, error) {
	return s.update(ctx, ref, func(m *store.Machine) error {
		if m.State == store.StateRevoked {
			return fmt.Errorf("machine %s is already revoked: %w", short(m.ID), api.ErrConflict)
		}
		m.State, m.Reason = store.StateRevoked, reason
		return nil
	})
}

// Forget implements api.Service.
func (s *Service) Forget(ctx context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolveLocked(ref)
	if err != nil {
		return err
	}
	s.recordLocked(ctx)
	delete(s.machines, m.ID)
	delete(s.secrets, m.ID)
	return nil
}

// SetSecret implements api.Service.
func (s *Service) SetSecret(ctx context.Context, ref, name string, value []byte) error {
	if !secretName.MatchString(name) {
		return fmt.Errorf("bad secret name %q: %w", name, api.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolveLocked(ref)
	if err != nil {
		return err
	}
	s.recordLocked(ctx)
	if s.secrets[m.ID] == nil {
		s.secrets[m.ID] = map[string][]byte{}
	}
	s.secrets[m.ID][name] = slices.Clone(value)
	return nil
}

// SecretNames implements api.Service.
func (s *Service) SecretNames(ctx context.Context, ref string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	var names []string
	for n := range s.secrets[m.ID] {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// DeleteSecret implements api.Service.
func (s *Service) DeleteSecret(ctx context.Context, ref, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolveLocked(ref)
	if err != nil {
		return err
	}
	if _, ok := s.secrets[m.ID][name]; !ok {
		return fmt.Errorf("secret %q of machine %s: %w", name, short(m.ID), api.ErrNotFound)
	}
	s.recordLocked(ctx)
	delete(s.secrets[m.ID], name)
	return nil
}

func (s *Service) update(ctx context.Context, ref string, fn func(*store.Machine) error) (*store.Machine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	c := *m
	if err := fn(&c); err != nil {
		return nil, err
	}
	s.recordLocked(ctx)
	s.machines[c.ID] = &c
	out := c
	return &out, nil
}

func (s *Service) recordLocked(ctx context.Context) {
	if s.actorOf != nil {
		s.actors = append(s.actors, s.actorOf(ctx))
	}
}

var hexPrefix = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

func (s *Service) resolveLocked(ref string) (*store.Machine, error) {
	if m, ok := s.machines[ref]; ok {
		return m, nil
	}
	var found []*store.Machine
	for _, m := range s.machines {
		if m.Name == ref || (hexPrefix.MatchString(ref) && strings.HasPrefix(m.ID, ref)) {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("machine %q: %w", ref, api.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("machine %q matches %d machines: %w", ref, len(found), api.ErrAmbiguous)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
