package store

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAddAttempts writes batches of boot attempts as the history
// recorder does in a storm: one attempt for each of 64 machines whose
// histories are full (MaxHistory each) per AddAttempts. It reports the
// process's CPU time per attempt (cpu-us/attempt: what the history costs
// a server beside its attestations) besides the wall time per batch.
func BenchmarkAddAttempts(b *testing.B) {
	const machines = 64
	ctx := context.Background()
	db := enrolledDB(b, machines)
	batch := make([]MachineAttempt, machines)
	for i := range batch {
		batch[i] = MachineAttempt{MachineID: testMachine(i).ID, Attempt: BootAttempt{
			Server: "bench", Remote: fmt.Sprintf("127.0.0.1:%d", 40000+i), Outcome: "allowed",
			AgentVersion: "v0.9.0", Duration: 3 * time.Millisecond,
		}}
	}
	t := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	next := func() {
		t = t.Add(time.Second)
		for i := range batch {
			batch[i].Attempt.Time = t
		}
	}
	for range MaxHistory {
		next()
		if _, err := db.AddAttempts(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := processCPU(b)
	b.ResetTimer()
	for b.Loop() {
		next()
		if unknown, err := db.AddAttempts(ctx, batch); err != nil || len(unknown) > 0 {
			b.Fatalf("AddAttempts: %d unknown, %v", len(unknown), err)
		}
	}
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N*machines), "cpu-us/attempt")
}

// processCPU is the process's user and system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReleaseHistory is what an allowed boot's history costs the
// releases that record it, in rounds of one release each of 64 machines
// with full histories, all at once (the releases share group commits):
// "none" records no history, "in-release" adds each attempt in its
// release's transaction (UpdateMachineRecord, as attest with
// Config.History), "batched" writes the round's attempts afterwards with
// one AddAttempts (as the history.Recorder's writer did for every
// outcome). It reports the process's CPU time per release. Measured
// (2026-12-03, 2 shared cores, load 8-14): none 64-77, in-release 88-95,
// batched 87-100 cpu-us/release: the history costs its page writes and
// their fdatasync either way; in the release it needs no commit of its
// own and is there once the release returns.
func BenchmarkReleaseHistory(b *testing.B) {
	const machines = 64
	for _, mode := range []string{"none", "in-release", "batched"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			db := enrolledDB(b, machines)
			t := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
			attempt := func(i int) BootAttempt {
				return BootAttempt{Time: t, Server: "bench", Remote: fmt.Sprintf("127.0.0.1:%d", 40000+i),
					Outcome: "allowed", Check: "policy", Reason: "boot state matches approval",
					AgentVersion: "v0.9.0", Duration: 3 * time.Millisecond}
			}
			round := func(mode string) {
				t = t.Add(time.Second)
				var wg sync.WaitGroup
				for i := range machines {
					wg.Go(func() {
						_, err := db.UpdateMachineRecord(ctx, testMachine(i).ID, func(m *Machine) error {
							m.BootCount++
							m.LastSeen = t
							if mode == "in-release" {
								m.AddAttempt(attempt(i))
							}
							return nil
						})
						if err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				if mode == "batched" {
					batch := make([]MachineAttempt, machines)
					for i := range batch {
						batch[i] = MachineAttempt{testMachine(i).ID, attempt(i)}
					}
					if _, err := db.AddAttempts(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			for range MaxHistory { // full histories
				round("batched")
			}
			rounds := max(1, b.N/machines)
			cpu0 := processCPU(b)
			b.ResetTimer()
			for range rounds {
				round(mode)
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(rounds*machines), "cpu-us/release")
		})
	}
}
