package attest_test

import (
	"context"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/history"
	"github.com/sealroot/sealroot/server/metrics"
)

// BenchmarkObservability measures what boot history and metrics cost an
// attestation: two servers, each with its own store and the same 64
// approved machines, one plain and one observed as the daemon observes
// (history.Recorder as Config.History, metrics.Metrics as the Observer),
// take turns in short rounds inside one process (one attestation per
// machine each; plain first in even rounds, observed first in odd ones).
// Every attestation here is allowed, so the observed server's history is
// written by the releases' own transactions (an entry more in each), not
// by the Recorder's writer. A round's cost is the process's CPU time in
// the server's phases (the clients' software TPMs run untimed); the
// observed round's includes the history writer's, if any, which it waits
// for (Recorder.Flush). Load from other work on a shared
// machine lands on both sides alike, so the median of the per-round
// ratios plain/observed (the observed rate over the plain rate) is
// steadier than rates taken in separate runs. b.N counts attestations
// per server. Each round ends with the same settling time on both sides
// (settle), so work a round leaves running (a garbage collection it
// started) is charged to it alike.
func BenchmarkObservability(b *testing.B) {
	agents := attest.BenchAgents(b, 64)
	plain := attest.NewBenchEnv(b)
	plain.Enroll(b, agents)

	observed := attest.NewBenchEnv(b)
	rec := history.New(observed.Store, "bench", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go pprof.Do(ctx, pprof.Labels("side", "observed-writer"), func(ctx context.Context) { done <- rec.Run(ctx) })
	b.Cleanup(func() { cancel(); <-done })
	observed.SetHistory(rec)
	observed.SetObserver(metrics.New(metrics.Sources{}))
	observed.Enroll(b, agents)
	rec.Flush()

	rounds := max(1, b.N/len(agents))
	ratios := make([]float64, 0, rounds)
	var cpuPlain, cpuObserved time.Duration
	b.ResetTimer()
	for r := range rounds {
		var p, o time.Duration
		// Labelled for CPU profiles (-cpuprofile; pprof -tagfocus side=observed).
		runPlain := func() {
			pprof.Do(ctx, pprof.Labels("side", "plain"), func(context.Context) {
				p = plain.Round(b, agents) + settle(b, nil)
			})
		}
		runObserved := func() {
			pprof.Do(ctx, pprof.Labels("side", "observed"), func(context.Context) {
				o = observed.Round(b, agents) + settle(b, rec.Flush)
			})
		}
		if r%2 == 0 {
			runPlain()
			runObserved()
		} else {
			runObserved()
			runPlain()
		}
		cpuPlain += p
		cpuObserved += o
		if o > 0 {
			ratios = append(ratios, float64(p)/float64(o))
		}
	}
	b.StopTimer()
	slices.Sort(ratios)
	n := float64(rounds * len(agents))
	b.ReportMetric(float64(cpuPlain.Microseconds())/n, "plain-cpu-us/op")
	b.ReportMetric(float64(cpuObserved.Microseconds())/n, "observed-cpu-us/op")
	if len(ratios) > 0 {
		b.ReportMetric(ratios[len(ratios)/2], "median-ratio")
		b.ReportMetric(ratios[len(ratios)/4], "q1-ratio")
		b.ReportMetric(ratios[len(ratios)*3/4], "q3-ratio")
	}
	b.ReportMetric(float64(len(ratios)), "rounds")
}

// settleTime is how long a round's end is timed: longer than the history
// writer's batch window (20 ms) and commit.
const settleTime = 50 * time.Millisecond

// settle runs flush, if any, then waits until settleTime has passed, and
// returns the process's CPU time meanwhile.
func settle(b *testing.B, flush func()) time.Duration {
	t0, cpu0 := time.Now(), attest.CPUTime(b)
	if flush != nil {
		flush()
	}
	time.Sleep(time.Until(t0.Add(settleTime)))
	return attest.CPUTime(b) - cpu0
}
