package backoff

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"testing"
	"time"
)

func TestNextBounds(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 3 * time.Second
	b := New(lo, hi, mrand.New(mrand.NewPCG(1, 2)))
	wantCeil := []time.Duration{100, 200, 400, 800, 1600, 3000, 3000, 3000}
	for i, c := range wantCeil {
		c *= time.Millisecond
		if got := b.Next(); got < lo || got > c {
			t.Errorf("attempt %d: Next() = %v, want in [%v, %v]", i, got, lo, c)
		}
	}
}

func TestJitterSpreads(t *testing.T) {
	// Two machines with different seeds at the same attempt must not agree,
	// and one machine's delays at a capped attempt must vary.
	b := New(time.Millisecond, time.Second, mrand.New(mrand.NewPCG(7, 7)))
	for range 20 {
		b.Next()
	}
	seen := map[time.Duration]bool{}
	var sum time.Duration
	const n = 200
	for range n {
		d := b.Next()
		seen[d] = true
		sum += d
	}
	if len(seen) < n/2 {
		t.Errorf("%d distinct delays out of %d, want jitter", len(seen), n)
	}
	if mean := sum / n; mean < 300*time.Millisecond || mean > 700*time.Millisecond {
		t.Errorf("mean delay at the cap = %v, want about 500ms (uniform in [1ms, 1s])", mean)
	}
}

func TestReset(t *testing.T) {
	b := New(10*time.Millisecond, time.Hour, nil)
	for range 10 {
		b.Next()
	}
	b.Reset()
	if got := b.Next(); got > 10*time.Millisecond {
		t.Errorf("Next() after Reset = %v, want <= 10ms", got)
	}
}

func TestNewClampsArguments(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		want     time.Duration
	}{
		{"max_below_min", time.Second, time.Millisecond, time.Second},
		{"zero_min", 0, 0, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.min, tt.max, nil)
			for range 5 {
				if got := b.Next(); got != tt.want {
					t.Fatalf("Next() = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestSleepCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := New(time.Hour, time.Hour, nil)
	if err := b.Sleep(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep(canceled) = %v, want context.Canceled", err)
	}
}
