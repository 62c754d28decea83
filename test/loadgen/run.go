package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Limits of Options.
const (
	MaxConcurrency = 1024
	maxKeptErrors  = 3 // distinct error messages kept in Stats.Err
)

// ErrInvalidOptions is returned by Run for a count or concurrency out of
// range.
var ErrInvalidOptions = errors.New("loadgen: invalid options")

// Op is one timed operation. worker is the index of the goroutine running
// it, in [0, Concurrency): an Op can use per-worker state (one simulated
// machine per worker) without locking. i is the operation's index in
// [0, N).
type Op func(ctx context.Context, worker, i int) error

// Options configure Run.
type Options struct {
	N           int           // operations, at least 1
	Concurrency int           // goroutines, 1 to MaxConcurrency
	OpTimeout   time.Duration // per operation; default 30s
}

// Stats summarizes a Run. Latency percentiles are over the successful
// operations only; failed ones are counted in Errors.
type Stats struct {
	N       int           // operations run (failed ones included)
	Errors  int           // failed operations
	Err     error         // the first few distinct failures, joined
	Elapsed time.Duration // wall clock of the whole run
	// CPU is the CPU time this process used during the run (0 if
	// unknown): the clients' and, if in-process, the server's.
	CPU time.Duration
	P50 time.Duration
	P99 time.Duration
	Max time.Duration
}

// Throughput is successful operations per second of wall clock.
func (s *Stats) Throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.N-s.Errors) / s.Elapsed.Seconds()
}

// CPUPerOp is CPU time per operation run, or 0 if unknown.
func (s *Stats) CPUPerOp() time.Duration {
	if s.N == 0 {
		return 0
	}
	return s.CPU / time.Duration(s.N)
}

// Validate checks o's ranges.
func (o Options) Validate() error {
	switch {
	case o.N < 1:
		return fmt.Errorf("%w: count %d, want at least 1", ErrInvalidOptions, o.N)
	case o.Concurrency < 1 || o.Concurrency > MaxConcurrency:
		return fmt.Errorf("%w: concurrency %d, want 1 to %d", ErrInvalidOptions, o.Concurrency, MaxConcurrency)
	}
	return nil
}

// Run calls op N times on Concurrency goroutines and measures each call.
// It stops starting operations when ctx ends and then returns the stats of
// those that ran, with ctx's error.
func Run(ctx context.Context, opts Options, op Op) (*Stats, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	timeout := opts.OpTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	var rec recorder
	next := make(chan int)
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), processCPU()
	for w := range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				opCtx, cancel := context.WithTimeout(ctx, timeout)
				t0 := time.Now()
				err := op(opCtx, w, i)
				rec.add(time.Since(t0), err)
				cancel()
			}
		}()
	}
feed:
	for i := range opts.N {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	st := rec.stats(time.Since(start))
	if cpu0 > 0 {
		st.CPU = processCPU() - cpu0
	}
	return st, ctx.Err()
}

// recorder collects the latencies and failures of concurrent operations.
type recorder struct {
	mu       sync.Mutex
	ok       []time.Duration // latencies of successful operations
	failures int
	errs     []error // up to maxKeptErrors distinct messages
}

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.ok = append(r.ok, d)
		return
	}
	r.failures++
	if len(r.errs) < maxKeptErrors && !slices.ContainsFunc(r.errs, func(e error) bool { return e.Error() == err.Error() }) {
		r.errs = append(r.errs, err)
	}
}

func (r *recorder) stats(elapsed time.Duration) *Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.ok)
	return &Stats{
		N:       len(r.ok) + r.failures,
		Errors:  r.failures,
		Err:     errors.Join(r.errs...),
		Elapsed: elapsed,
		P50:     Percentile(r.ok, 50),
		P99:     Percentile(r.ok, 99),
		Max:     Percentile(r.ok, 100),
	}
}

// Percentile returns the p-th percentile (0 < p <= 100, nearest rank) of
// sorted, or 0 if sorted is empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
