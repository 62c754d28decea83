package roots

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DefaultBootGrace is Config.BootGrace's default: how long after its
// root is handed out a machine that has not attached it counts as
// booting. An agent attaches its root seconds after its credential.
const DefaultBootGrace = 2 * time.Minute

// Attesting reports attestations in progress; *attest.Server implements
// it.
type Attesting interface {
	Attesting(machineID string) bool
}

// SetAttesting makes Hold leave alone machines that a is attesting. The
// attestation server is built on the Service, so it comes after New;
// call it before serving.
func (s *Service) SetAttesting(a Attesting) {
	s.boots.mu.Lock()
	defer s.boots.mu.Unlock()
	s.boots.attesting = a
}

// Fence keeps boots of the machine away from its root until release,
// for a caller that withdraws the root itself (ReleaseIdle, as an iSCSI
// capture does): like Hold it fails with ErrInUse while the machine is
// booting, and a Prepare meanwhile waits for the release. Hold fences.
func (s *Service) Fence(machineID string) (release func(), err error) {
	return s.boots.hold(machineID, s.attached)
}

// attached reports whether a provider says the machine attached its
// root.
func (s *Service) attached(machineID string) bool {
	for _, p := range s.all {
		if a, ok := p.(Attacher); ok && a.Attached(machineID) {
			return true
		}
	}
	return false
}

// boots orders boots (Prepare) against holds (Hold) machine by machine,
// so that a hold never takes a root from a boot in progress and a boot
// never fails on a hold.
type boots struct {
	grace time.Duration
	now   func() time.Time

	mu        sync.Mutex // guards the fields below
	attesting Attesting
	prepared  map[string]time.Time     // when Prepare last handed out a root Hold could take
	held      map[string]chan struct{} // machines held; closed at release
	preparing map[string]int           // Prepares running
}

func newBoots(grace time.Duration, now func() time.Time) boots {
	if grace <= 0 {
		grace = DefaultBootGrace
	}
	if now == nil {
		now = time.Now
	}
	return boots{grace: grace, now: now, prepared: map[string]time.Time{},
		held: map[string]chan struct{}{}, preparing: map[string]int{}}
}

// start waits until the machine is not held, then records a Prepare of
// it; done ends the Prepare, recording the time of a root handed out
// that Hold could take (holdable and ok).
func (b *boots) start(ctx context.Context, id string, holdable bool) (done func(ok bool), err error) {
	b.mu.Lock()
	for b.held[id] != nil {
		ch := b.held[id]
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a backup or capture to release the root: %w", context.Cause(ctx))
		}
		b.mu.Lock()
	}
	b.preparing[id]++
	b.mu.Unlock()
	return func(ok bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.preparing[id]--; b.preparing[id] == 0 {
			delete(b.preparing, id)
		}
		if ok && holdable {
			b.prepared[id] = b.now()
		}
	}, nil
}

// hold marks the machine held unless it is booting: attesting,
// preparing, or prepared within the grace and not attached. unhold ends
// the hold and lets waiting Prepares go on.
func (b *boots) hold(id string, attached func(string) bool) (unhold func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[id] != nil {
		return nil, fmt.Errorf("root of %.12s is already held for a backup or a capture: %w", id, ErrInUse)
	}
	if b.preparing[id] > 0 || (b.attesting != nil && b.attesting.Attesting(id)) {
		return nil, fmt.Errorf("machine %.12s is attesting (booting): %w", id, ErrInUse)
	}
	if t, ok := b.prepared[id]; ok {
		if age := b.now().Sub(t); age < b.grace && !attached(id) {
			return nil, fmt.Errorf("machine %.12s is booting: its root was handed out %s ago and is not attached yet (a boot counts for %s): %w",
				id, age.Round(time.Second), b.grace, ErrInUse)
		}
	}
	delete(b.prepared, id) // the boot is over: the hold withdraws its root
	ch := make(chan struct{})
	b.held[id] = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.held, id)
			b.mu.Unlock()
			close(ch)
		})
	}, nil
}
