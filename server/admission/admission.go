// Package admission paces a boot storm: a Pacer learns how long a unit of
// work (an attestation, a download) holds one of a service's slots, and
// gives each client it cannot admit now its own time to come back, one
// slot's worth apart, so that refused clients return at the pace the
// service frees slots instead of all at once. A Queue admits to the slots
// in the order clients arrived: a short line, and a place kept for a
// refused client so that it comes back ahead of those who came after it.
//
// A refused client that ignores its time is still bounded by the slots of
// the service (and by its per-source limits); the Pacer only decides what
// to tell it.
//
// # Concurrency
//
// A Pacer is safe for concurrent use. Its zero value is not usable; call
// New.
package admission

import (
	"sync"
	"time"
)

// Bounds of a retry-after.
const (
	// MinRetryAfter is the shortest time a refused client is told to wait.
	MinRetryAfter = 250 * time.Millisecond
	// MaxRetryAfter is the longest: past it, the schedule is a guess.
	MaxRetryAfter = 60 * time.Second
	// initialHold is the assumed hold time before any work finished.
	initialHold = 200 * time.Millisecond
)

// Pacer hands out return times at the pace a service with a fixed number
// of slots finishes its work.
type Pacer struct {
	slots int
	now   func() time.Time

	mu sync.Mutex
	// The fields below are guarded by mu.
	hold time.Duration // moving average of how long work holds a slot
	next time.Time     // the latest return time handed out
}

// New returns a Pacer for a service with slots slots (at least 1). A nil
// now uses time.Now.
func New(slots int, now func() time.Time) *Pacer {
	if now == nil {
		now = time.Now
	}
	return &Pacer{slots: max(1, slots), now: now, hold: initialHold}
}

// Done records that a unit of work held a slot for d.
func (p *Pacer) Done(d time.Duration) {
	if d <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// An exponentially weighted moving average, 1/8 per sample (as TCP's
	// smoothed RTT, RFC 6298).
	p.hold += (d - p.hold) / 8
}

// Hold is the moving average of how long work holds a slot.
func (p *Pacer) Hold() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hold
}

// Interval is the time between two slots freeing up at the current pace.
func (p *Pacer) Interval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.intervalLocked()
}

func (p *Pacer) intervalLocked() time.Duration { return p.hold / time.Duration(p.slots) }

// RetryAfter books the next free return time for a refused client and
// returns how long from now that is, within [MinRetryAfter,
// MaxRetryAfter]. Successive calls hand out times one Interval apart,
// after the current work has had time to finish.
func (p *Pacer) RetryAfter() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if earliest := now.Add(p.hold); p.next.Before(earliest) {
		p.next = earliest
	} else {
		p.next = p.next.Add(p.intervalLocked())
	}
	d := p.next.Sub(now)
	if d > MaxRetryAfter {
		// The schedule is full that far out: do not let it grow without
		// bound from clients that never return.
		p.next = now.Add(MaxRetryAfter)
		d = MaxRetryAfter
	}
	return max(d, MinRetryAfter)
}
