package users

import (
	"sync"
	"time"
)

// Limiter slows down password guessing: after Free failed logins of a key
// (a user name, a machine) each further attempt must wait for a delay
// that doubles with every failure, from Base up to Max. A success clears
// the key. It is safe for concurrent use.
type Limiter struct {
	free      int
	base, max time.Duration
	maxKeys   int
	now       func() time.Time

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	count int
	until time.Time // no attempt before
	last  time.Time
}

// LimiterConfig configures a Limiter; zero fields take the defaults.
type LimiterConfig struct {
	Free    int           // failures without delay; default 3
	Base    time.Duration // first delay; default 2s
	Max     time.Duration // longest delay; default 5m
	MaxKeys int           // keys remembered; default 10000
	Now     func() time.Time
}

// NewLimiter returns a Limiter.
func NewLimiter(cfg LimiterConfig) *Limiter {
	l := &Limiter{free: cfg.Free, base: cfg.Base, max: cfg.Max, maxKeys: cfg.MaxKeys, now: cfg.Now, keys: map[string]*failures{}}
	if l.free <= 0 {
		l.free = 3
	}
	if l.base <= 0 {
		l.base = 2 * time.Second
	}
	if l.max <= 0 {
		l.max = 5 * time.Minute
	}
	if l.maxKeys <= 0 {
		l.maxKeys = 10000
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// Wait returns how long key must wait before its next attempt; zero when
// it may try now.
func (l *Limiter) Wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.keys[key]
	if f == nil {
		return 0
	}
	return max(0, f.until.Sub(l.now()))
}

// Fail records a failed attempt of key.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.keys[key]
	if f == nil {
		if len(l.keys) >= l.maxKeys {
			l.evict(now)
		}
		f = &failures{}
		l.keys[key] = f
	}
	f.count++
	f.last = now
	if f.count > l.free {
		d := l.base
		for i := l.free + 1; i < f.count && d < l.max; i++ {
			d *= 2
		}
		f.until = now.Add(min(d, l.max))
	}
}

// Succeed clears key's failures.
func (l *Limiter) Succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// evict forgets keys idle for Max, or else the key idle longest. Called
// with mu held.
func (l *Limiter) evict(now time.Time) {
	var oldest string
	for k, f := range l.keys {
		if now.Sub(f.last) > l.max && now.After(f.until) {
			delete(l.keys, k)
			continue
		}
		if oldest == "" || f.last.Before(l.keys[oldest].last) {
			oldest = k
		}
	}
	if len(l.keys) >= l.maxKeys && oldest != "" {
		delete(l.keys, oldest)
	}
}
