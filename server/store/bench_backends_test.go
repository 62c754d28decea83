package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// backendMachines is how many enrolled machines the backend comparison
// attests among.
const backendMachines = 500

// BenchmarkAttestationBackends runs the store operations of one
// attestation of an approved machine (Machine at hello, Secrets at
// release, UpdateMachine recording the boot) from many exchanges at once
// on each backend in the same run: bbolt, etcd with one embedded member,
// and etcd with three (every write a Raft round between them). `make
// bench-etcd` prints the etcd/bbolt ratios of the rates.
func BenchmarkAttestationBackends(b *testing.B) {
	for _, backend := range []struct {
		name    string
		members int
	}{{"bbolt", 0}, {"etcd_one", 1}, {"etcd_three", 3}} {
		b.Run(backend.name, func(b *testing.B) {
			ctx := context.Background()
			var st Store
			if backend.members == 0 {
				st, _ = openTestDB(b)
			} else {
				c := etcdtest.Start(b, backend.members)
				s, err := NewEtcd(ctx, c.Client(), etcdtest.Prefix(b), nil)
				if err != nil {
					b.Fatal(err)
				}
				st = s
			}
			enroll(b, st, backendMachines)
			var next atomic.Int64
			b.SetParallelism(16) // 16 exchanges per GOMAXPROCS
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(uint64(next.Add(1)), 7))
				for pb.Next() {
					if err := attestStore(ctx, st, testMachine(r.IntN(backendMachines)).ID); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attestations/s")
		})
	}
}

// enroll creates n enrolled machines in st, each with the two secrets an
// iSCSI root gives it, through the Store interface (16 at a time).
func enroll(b *testing.B, st Store, n int) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				m := enrolledMachine(i)
				if err := st.CreateMachine(ctx, m); err != nil {
					errs <- err
					return
				}
				for _, name := range []string{"chap", "wireguard"} {
					if err := st.PutSecret(ctx, m.ID, name, make([]byte, 80)); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if ms, err := st.Machines(ctx); err != nil || len(ms) != n {
		b.Fatalf("Machines() = %d machines, %v; want %d", len(ms), err, n)
	}
}

// attestStore is attestOnce on any Store.
func attestStore(ctx context.Context, st Store, id string) error {
	if _, err := st.Machine(ctx, id); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if _, err := st.Secrets(ctx, id); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	now := time.Now()
	_, err := st.UpdateMachine(ctx, id, func(m *Machine) error {
		m.LastSeen = now
		m.LastAddress = "10.0.0.2:4433"
		m.BootCount++
		return nil
	})
	return err
}
