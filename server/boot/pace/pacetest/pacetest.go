// Package pacetest has a fake pace.Clock.
package pacetest

import (
	"context"
	"sync"
	"time"
)

// FakeClock is a Clock whose Sleep advances its time at once and records
// the total slept: tests measure the pace without waiting. It is safe for
// concurrent use.
type FakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration
}

// NewFakeClock returns a FakeClock at a fixed instant.
func NewFakeClock() *FakeClock { return &FakeClock{now: time.Unix(1_800_000_000, 0)} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep advances the fake time by d.
func (c *FakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.slept += d
	return nil
}

// Advance moves the fake time on by d, as time passing without a sleep.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Slept returns the total time slept.
func (c *FakeClock) Slept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept
}
