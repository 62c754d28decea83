package admission

import (
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestRetryAfterSpacesClientsOneIntervalApart(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	p := New(4, c.now)
	for range 64 {
		p.Done(time.Second)
	}
	hold := p.Hold()
	if hold < 900*time.Millisecond || hold > time.Second {
		t.Fatalf("hold after 64 samples of 1s = %v, want about 1s", hold)
	}
	first := p.RetryAfter()
	if first != hold {
		t.Errorf("first RetryAfter = %v, want the hold time %v", first, hold)
	}
	for i := 1; i < 8; i++ {
		if got, want := p.RetryAfter(), hold+time.Duration(i)*p.Interval(); got != want {
			t.Errorf("RetryAfter #%d = %v, want %v", i, got, want)
		}
	}
}

func TestRetryAfterForgetsThePast(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	p := New(1, c.now)
	for range 100 {
		p.RetryAfter()
	}
	c.t = c.t.Add(time.Hour)
	if got, want := p.RetryAfter(), max(initialHold, MinRetryAfter); got != want {
		t.Errorf("RetryAfter an hour later = %v, want %v", got, want)
	}
}

func TestRetryAfterBounded(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	p := New(1, c.now)
	p.Done(time.Nanosecond) // work shorter than any sensible retry
	for range 8 {
		p.Done(time.Nanosecond)
	}
	if got := p.RetryAfter(); got != MinRetryAfter {
		t.Errorf("RetryAfter with tiny holds = %v, want %v", got, MinRetryAfter)
	}
	for range 64 {
		p.Done(10 * time.Minute)
	}
	for range 1000 {
		if got := p.RetryAfter(); got > MaxRetryAfter {
			t.Fatalf("RetryAfter = %v, want at most %v", got, MaxRetryAfter)
		}
	}
}
