package loadgen_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/loadgen"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median_of_four", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99_of_hundred", ms(hundred...), 99, 99 * time.Millisecond},
		{"p50_of_hundred", ms(hundred...), 50, 50 * time.Millisecond},
		{"max", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"tiny_p", ms(1, 2, 3), 0.001, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := loadgen.Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestRunCountsEveryOperationOnce(t *testing.T) {
	const n, c = 100, 7
	var mu sync.Mutex
	seen := make(map[int]int)
	workers := make(map[int]bool)
	errOdd := errors.New("odd")
	st, err := loadgen.Run(context.Background(), loadgen.Options{N: n, Concurrency: c}, func(_ context.Context, w, i int) error {
		mu.Lock()
		seen[i]++
		workers[w] = true
		mu.Unlock()
		if i%10 == 9 {
			return fmt.Errorf("op %d: %w", i%2, errOdd) // one distinct message
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(seen) != n {
		t.Errorf("%d distinct operations ran, want %d", len(seen), n)
	}
	for i, k := range seen {
		if k != 1 {
			t.Errorf("operation %d ran %d times", i, k)
		}
	}
	for w := range workers {
		if w < 0 || w >= c {
			t.Errorf("worker index %d out of [0, %d)", w, c)
		}
	}
	if st.N != n || st.Errors != 10 || !errors.Is(st.Err, errOdd) {
		t.Errorf("stats N=%d Errors=%d Err=%v, want %d, 10, %v", st.N, st.Errors, st.Err, n, errOdd)
	}
	if got, want := st.Throughput(), float64(n-10)/st.Elapsed.Seconds(); got != want {
		t.Errorf("Throughput = %v, want %v (successes only)", got, want)
	}
}

func TestRunKeepsFewDistinctErrors(t *testing.T) {
	st, _ := loadgen.Run(context.Background(), loadgen.Options{N: 50, Concurrency: 4}, func(_ context.Context, _, i int) error {
		return fmt.Errorf("failure %d", i)
	})
	if st.Errors != 50 || st.P50 != 0 {
		t.Errorf("Errors = %d, P50 = %v; want 50, 0", st.Errors, st.P50)
	}
	if n := len(st.Err.(interface{ Unwrap() []error }).Unwrap()); n != 3 {
		t.Errorf("kept %d errors, want 3", n)
	}
}

func TestRunMeasuresLatency(t *testing.T) {
	st, err := loadgen.Run(context.Background(), loadgen.Options{N: 8, Concurrency: 4}, func(context.Context, int, int) error {
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st.P50 < 20*time.Millisecond || st.P99 < st.P50 || st.Max < st.P99 {
		t.Errorf("P50 %v, P99 %v, Max %v: want 20ms <= P50 <= P99 <= Max", st.P50, st.P99, st.Max)
	}
	if st.Elapsed < 40*time.Millisecond {
		t.Errorf("8 ops of 20ms on 4 workers took %v, want at least 40ms", st.Elapsed)
	}
}

func TestRunMeasuresCPU(t *testing.T) {
	st, err := loadgen.Run(context.Background(), loadgen.Options{N: 4, Concurrency: 1}, func(context.Context, int, int) error {
		for c0 := processCPU(t); processCPU(t)-c0 < 10*time.Millisecond; {
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st.CPU < 20*time.Millisecond || st.CPUPerOp() != st.CPU/4 {
		t.Errorf("4 ops using 10ms of CPU each: CPU %v (%v/op), want at least 20ms", st.CPU, st.CPUPerOp())
	}
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := loadgen.Run(ctx, loadgen.Options{N: 1000, Concurrency: 2}, func(_ context.Context, _, i int) error {
		switch {
		case i == 10:
			cancel()
		case i > 10:
			<-ctx.Done() // no progress past 10 before the cancel
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if st.N >= 100 || st.N < 11 {
		t.Errorf("ran %d operations after cancel at 10", st.N)
	}
}

func TestRunRejectsInvalidOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts loadgen.Options
	}{
		{"zero_count", loadgen.Options{N: 0, Concurrency: 1}},
		{"zero_concurrency", loadgen.Options{N: 1, Concurrency: 0}},
		{"too_concurrent", loadgen.Options{N: 1, Concurrency: loadgen.MaxConcurrency + 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadgen.Run(context.Background(), tt.opts, func(context.Context, int, int) error {
				t.Error("operation ran")
				return nil
			})
			if !errors.Is(err, loadgen.ErrInvalidOptions) {
				t.Errorf("Run = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// processCPU is the CPU time this process used so far.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
