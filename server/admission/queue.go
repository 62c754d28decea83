package admission

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Queue admits work to a fixed number of slots in the order clients
// arrived. A client that finds every slot taken waits in line, in the
// order of its place (when it first asked), for as long as its context
// allows; the line is bounded. A client that is not served in that time,
// or finds the line full of clients that came before it, is refused with
// a *BusyError: how long until the clients ahead of it are likely served
// (at the pace of a Pacer that learns how long work holds a slot). Its
// place is booked for its key for a while, so that when it comes back it
// goes ahead of every client that arrived after it, instead of behind
// the whole line again.
//
// Keys should be something a client cannot forge cheaply (the server
// uses addresses proven by the QUIC handshake); a client that comes back
// early with its key is still served only after the places ahead of it,
// and never holds more than one place.
//
// A Queue is safe for concurrent use. Its zero value is not usable; call
// NewQueue.
type Queue[K comparable] struct {
	pacer      *Pacer
	slots      int
	maxWaiting int
	now        func() time.Time

	mu sync.Mutex
	// The fields below are guarded by mu.
	used   int          // slots taken; below slots only while line is empty
	seq    uint64       // orders places taken at the same instant
	line   []*waiter[K] // waiting for a slot, earliest place first
	booked map[K]booking
	order  []bookedPlace[K] // the booked places, earliest first
	swept  time.Time        // when expired bookings were last removed
}

// place is when a client first asked; seq breaks ties.
type place struct {
	at  time.Time
	seq uint64
}

func (p place) before(o place) bool {
	if !p.at.Equal(o.at) {
		return p.at.Before(o.at)
	}
	return p.seq < o.seq
}

// booking is a refused client's place, kept until expires.
type booking struct {
	place   place
	expires time.Time
}

type bookedPlace[K comparable] struct {
	key   K
	place place
}

type waiter[K comparable] struct {
	key   K
	place place
	wake  chan struct{} // closed when granted or pushed out of the line
	// granted and pushed are guarded by the Queue's mu.
	granted bool // given a slot
	pushed  bool // pushed out of a full line by an earlier place
}

// Bounds of a booking.
const (
	// bookingGrace is how long past its return time a booked place is
	// kept: the client's jitter and its new connection's handshake.
	bookingGrace = 5 * time.Second
	// maxBooked bounds the places kept for refused clients; past it a
	// refused client gets a time to come back but no place.
	maxBooked = 1 << 16
	// sweepEvery is how often expired bookings are removed (until then
	// they still count as ahead of later places).
	sweepEvery = time.Second
)

// BusyError refuses a client: come back after RetryAfter.
type BusyError struct {
	RetryAfter time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("busy: come back in %v", e.RetryAfter)
}

// NewQueue returns a Queue of slots slots (at least 1) with a line of at
// most maxWaiting clients (0: none wait). A nil now uses time.Now.
func NewQueue[K comparable](slots, maxWaiting int, now func() time.Time) *Queue[K] {
	if now == nil {
		now = time.Now
	}
	slots = max(1, slots)
	return &Queue[K]{pacer: New(slots, now), slots: slots, maxWaiting: max(0, maxWaiting), now: now, booked: make(map[K]booking)}
}

// Take takes a slot for key, waiting in line until ctx ends. It returns
// nil once key holds a slot, which it must give back with Release; else
// a *BusyError. A slot granted just as ctx ends is still taken (nil).
func (q *Queue[K]) Take(ctx context.Context, key K) error {
	q.mu.Lock()
	now := q.now()
	p := q.placeLocked(key, now)
	if q.used < q.slots {
		q.used++
		q.unbookLocked(key)
		q.mu.Unlock()
		return nil
	}
	if len(q.line) >= q.maxWaiting {
		if len(q.line) == 0 || !p.before(q.line[len(q.line)-1].place) {
			err := q.refuseLocked(key, p, now)
			q.mu.Unlock()
			return err
		}
		// An earlier place goes ahead: the last in line is refused
		// (keeping its own place).
		last := q.line[len(q.line)-1]
		q.line = q.line[:len(q.line)-1]
		last.pushed = true
		close(last.wake)
	}
	w := &waiter[K]{key: key, place: p, wake: make(chan struct{})}
	i, _ := slices.BinarySearchFunc(q.line, p, func(w *waiter[K], p place) int {
		if w.place.before(p) {
			return -1
		}
		return 1
	})
	q.line = slices.Insert(q.line, i, w)
	q.unbookLocked(key)
	q.mu.Unlock()

	select {
	case <-w.wake:
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.granted {
		return nil
	}
	if !w.pushed {
		q.line = slices.DeleteFunc(q.line, func(o *waiter[K]) bool { return o == w })
	}
	return q.refuseLocked(key, w.place, q.now())
}

// placeLocked is key's booked place, or a new one now.
func (q *Queue[K]) placeLocked(key K, now time.Time) place {
	if b, ok := q.booked[key]; ok {
		if now.Before(b.expires) {
			return b.place
		}
		q.unbookLocked(key)
	}
	q.seq++
	return place{at: now, seq: q.seq}
}

// refuseLocked books p for key and returns the time until the clients
// ahead of it are likely served: one slot's Interval per client ahead of
// it (waiting, or booked with an earlier place), plus its own.
func (q *Queue[K]) refuseLocked(key K, p place, now time.Time) error {
	if now.Sub(q.swept) >= sweepEvery {
		q.sweepLocked(now)
	}
	q.unbookLocked(key)
	ahead := q.rankLocked(p)
	for _, w := range q.line {
		if !w.place.before(p) {
			break
		}
		ahead++
	}
	d := time.Duration(ahead+1) * q.pacer.Interval()
	d = min(max(d, MinRetryAfter), MaxRetryAfter)
	if len(q.order) < maxBooked {
		q.booked[key] = booking{place: p, expires: now.Add(2*d + bookingGrace)}
		q.order = slices.Insert(q.order, q.rankLocked(p), bookedPlace[K]{key: key, place: p})
	}
	return &BusyError{RetryAfter: d}
}

// rankLocked is the number of booked places before p.
func (q *Queue[K]) rankLocked(p place) int {
	i, _ := slices.BinarySearchFunc(q.order, p, func(b bookedPlace[K], p place) int {
		if b.place.before(p) {
			return -1
		}
		return 1
	})
	return i
}

// unbookLocked forgets key's booking, if any.
func (q *Queue[K]) unbookLocked(key K) {
	b, ok := q.booked[key]
	if !ok {
		return
	}
	delete(q.booked, key)
	for i := q.rankLocked(b.place); i < len(q.order); i++ {
		if q.order[i].key == key {
			q.order = slices.Delete(q.order, i, i+1)
			return
		}
	}
}

// sweepLocked removes the bookings that expired.
func (q *Queue[K]) sweepLocked(now time.Time) {
	q.swept = now
	q.order = slices.DeleteFunc(q.order, func(b bookedPlace[K]) bool {
		if now.Before(q.booked[b.key].expires) {
			return false
		}
		delete(q.booked, b.key)
		return true
	})
}

// Release gives back a slot that was held for held: the first client in
// line takes it.
func (q *Queue[K]) Release(held time.Duration) {
	q.pacer.Done(held)
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.line) == 0 {
		q.used--
		return
	}
	w := q.line[0]
	q.line = q.line[1:]
	w.granted = true
	close(w.wake)
}

// QueueLoad is a snapshot of a Queue.
type QueueLoad struct {
	Taken   int // slots taken
	Waiting int // clients in line
	Booked  int // places kept for refused clients (some may have expired)
}

// Load returns the Queue's current load.
func (q *Queue[K]) Load() QueueLoad {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueLoad{Taken: q.used, Waiting: len(q.line), Booked: len(q.booked)}
}

// Pacer is the Queue's pacer (its hold time and interval).
func (q *Queue[K]) Pacer() *Pacer { return q.pacer }
