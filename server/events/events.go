// Package events fans sealroot's decisions (audit records, as they are
// written) out to live subscribers such as `sealroot events --follow`.
// Publishing never blocks: a subscriber that falls behind by more than
// its buffer is cut off and told so, rather than slowing the server.
package events

import (
	"errors"
	"sync"

	"github.com/sealroot/sealroot/server/audit"
)

// buffer is how many entries a subscriber may fall behind.
const buffer = 256

// ErrFellBehind ends a subscription that could not keep up.
var ErrFellBehind = errors.New("events: subscriber fell behind; some events were not delivered")

// ErrClosed ends every subscription when the bus closes.
var ErrClosed = errors.New("events: server shutting down")

// Bus is a set of subscribers. The zero value is ready to use; it is safe
// for concurrent use.
type Bus struct {
	mu     sync.Mutex // guards the fields below
	subs   map[*Sub]struct{}
	closed bool
}

// Sub is one subscription.
type Sub struct {
	c   chan audit.Entry
	err error // why c was closed; set before close
}

// C delivers the entries; it is closed when the subscription ends (Err
// says why).
func (s *Sub) C() <-chan audit.Entry { return s.c }

// Err is why C was closed: ErrFellBehind, ErrClosed, or nil after
// Unsubscribe.
func (s *Sub) Err() error { return s.err }

// Subscribe starts a subscription; the caller must Unsubscribe it.
func (b *Bus) Subscribe() *Sub {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &Sub{c: make(chan audit.Entry, buffer)}
	if b.closed {
		s.err = ErrClosed
		close(s.c)
		return s
	}
	if b.subs == nil {
		b.subs = make(map[*Sub]struct{})
	}
	b.subs[s] = struct{}{}
	return s
}

// Unsubscribe ends s; it is safe to call more than once.
func (b *Bus) Unsubscribe(s *Sub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.endLocked(s, nil)
}

func (b *Bus) endLocked(s *Sub, err error) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	s.err = err
	close(s.c)
}

// Publish delivers e to every subscriber without blocking.
func (b *Bus) Publish(e audit.Entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			b.endLocked(s, ErrFellBehind)
		}
	}
}

// Subscribers returns how many subscriptions are open.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends every subscription with ErrClosed; later ones end at once.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		b.endLocked(s, ErrClosed)
	}
}
