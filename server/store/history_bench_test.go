package store

import (
	"context"
	"fmt"
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
