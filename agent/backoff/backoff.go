// Package backoff computes retry delays that grow exponentially and are
// spread with full jitter, so that many machines booting at once after a
// power cut do not retry in lockstep.
//
// A Backoff is not safe for concurrent use; give each retry loop its own.
package backoff

import (
	"context"
	mrand "math/rand/v2"
	"time"
)

// Backoff yields successive retry delays. Attempt n (counting from 0) waits
// a uniformly random duration in [min, ceiling(n)], where
// ceiling(n) = min(max, min·2ⁿ).
type Backoff struct {
	min, max time.Duration
	rand     *mrand.Rand // nil: the runtime's auto-seeded source
	attempt  int
}

// New returns a Backoff whose delays lie between min and max. A nil rand
// uses math/rand/v2's auto-seeded global source (it never blocks on the
// kernel's CRNG, so it is safe before entropy is seeded). If max < min, max
// is raised to min; a non-positive min is raised to one millisecond.
func New(min, max time.Duration, rand *mrand.Rand) *Backoff {
	if min <= 0 {
		min = time.Millisecond
	}
	if max < min {
		max = min
	}
	return &Backoff{min: min, max: max, rand: rand}
}

// Next returns the delay before the next attempt and advances the attempt
// counter.
func (b *Backoff) Next() time.Duration {
	ceiling := b.ceiling()
	b.attempt++
	span := int64(ceiling - b.min)
	if span <= 0 {
		return b.min
	}
	return b.min + time.Duration(b.int64N(span+1))
}

// Reset starts the sequence over, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits for Next() or until ctx is done, whichever is first, and
// returns ctx.Err() in the latter case.
func (b *Backoff) Sleep(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (b *Backoff) ceiling() time.Duration {
	c := b.min
	for i := 0; i < b.attempt && c < b.max; i++ {
		c *= 2
	}
	return min(c, b.max)
}

func (b *Backoff) int64N(n int64) int64 {
	if b.rand == nil {
		return mrand.Int64N(n)
	}
	return b.rand.Int64N(n)
}
