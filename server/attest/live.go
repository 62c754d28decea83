package attest

import (
	"context"
	"sync"
	"time"
)

// live is the set of exchanges in progress, by machine, so that revoking
// or forgetting a machine ends its attestations at once instead of letting
// them run on to their final check. The zero value is ready to use.
type live struct {
	mu        sync.Mutex // guards byMachine
	byMachine map[string]map[*exchange]struct{}
}

func (l *live) add(x *exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byMachine == nil {
		l.byMachine = make(map[string]map[*exchange]struct{})
	}
	xs := l.byMachine[x.machineID]
	if xs == nil {
		xs = make(map[*exchange]struct{})
		l.byMachine[x.machineID] = xs
	}
	xs[x] = struct{}{}
}

func (l *live) remove(x *exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	xs := l.byMachine[x.machineID]
	delete(xs, x)
	if len(xs) == 0 {
		delete(l.byMachine, x.machineID)
	}
}

// Attesting reports whether an attestation of machineID is in progress.
func (s *Server) Attesting(machineID string) bool {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	return len(s.live.byMachine[machineID]) > 0
}

// end ends every exchange of machineID with f and returns how many.
func (l *live) end(machineID string, f *Failure) int {
	l.mu.Lock()
	xs := make([]*exchange, 0, len(l.byMachine[machineID]))
	for x := range l.byMachine[machineID] {
		xs = append(xs, x)
	}
	l.mu.Unlock()
	for _, x := range xs {
		x.end(f)
	}
	return len(xs)
}

// readDeadliner is the part of a stream end needs to wake a blocked read.
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// endable makes x endable by EndExchanges once its machine is known: it
// returns x's context, cancelled when x ends, and a func to call when the
// exchange is over.
func (x *exchange) endable(ctx context.Context, st readDeadliner) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	x.endMu.Lock()
	x.cancel, x.wake = cancel, func() { st.SetReadDeadline(time.Now()) }
	x.endMu.Unlock()
	return ctx, func() {
		cancel()
		if x.machineID != "" {
			x.s.live.remove(x)
		}
	}
}

// end refuses the rest of x with f: a read in progress returns at once,
// work in progress sees its context cancelled.
func (x *exchange) end(f *Failure) {
	x.endMu.Lock()
	defer x.endMu.Unlock()
	if x.endedBy != nil {
		return
	}
	x.endedBy = f
	if x.cancel != nil {
		x.cancel()
	}
	if x.wake != nil {
		x.wake()
	}
}

// ended returns the failure x was ended with, or nil.
func (x *exchange) ended() error {
	x.endMu.Lock()
	defer x.endMu.Unlock()
	if x.endedBy == nil {
		return nil
	}
	return x.endedBy
}

// endableStream is a stream whose read deadlines an end overrides: once x
// has ended, any deadline set is now, so that a read begun after the end
// (whose wake it missed) returns at once too.
type endableStream struct {
	stream
	x *exchange
}

func (e endableStream) SetReadDeadline(t time.Time) error {
	e.x.endMu.Lock()
	defer e.x.endMu.Unlock()
	if e.x.endedBy != nil {
		t = time.Now()
	}
	return e.stream.SetReadDeadline(t)
}
