package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealroot/sealroot/server/eventlog"
)

// enrolledMachine is machine i as an approved machine looks after a few
// boots: real key sizes, an EK certificate, and pinned and reported boot
// states with an event log of a UEFI boot (about 40 events).
func enrolledMachine(i int) *Machine {
	m := testMachine(i)
	m.State = StateApproved
	m.EKPublic = make([]byte, 314) // RSA-2048 TPMT_PUBLIC
	m.AKPublic = make([]byte, 280)
	m.EKCert = make([]byte, 1100)
	m.Approved = bootState(i)
	m.Reported = bootState(i)
	m.LastSeen = m.FirstSeen
	m.LastAddress = "10.0.0.1:4433"
	m.BootCount = 12
	return m
}

func bootState(i int) *BootState {
	s := &BootState{PCRs: map[int][]byte{}, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, pcr := range []int{0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12} {
		s.PCRs[pcr] = digest(i, pcr)
	}
	for seq := range 40 {
		s.Events = append(s.Events, eventlog.Event{
			PCR: seq % 8, Sequence: seq, Type: 0x80000003, TypeName: "EV_EFI_BOOT_SERVICES_APPLICATION",
			Digest: digest(i, 100+seq), Description: fmt.Sprintf("PciRoot(0x0)/Pci(0x1f,0x2)/Sata(0x0,0xFFFF,0x0)/HD(1,GPT)/\\EFI\\BOOT\\BOOTX64.EFI #%d", seq),
		})
	}
	return s
}

func digest(a, b int) []byte {
	d := make([]byte, 32)
	r := rand.NewPCG(uint64(a), uint64(b))
	for j := range d {
		d[j] = byte(r.Uint64())
	}
	return d
}

// enrolledDB opens a database holding n enrolled machines, each with the
// two secrets an iSCSI root gives it.
func enrolledDB(b *testing.B, n int) *DB {
	b.Helper()
	ctx := context.Background()
	db, _ := openTestDB(b)
	const perTx = 500 // enrollment one by one would take minutes of fsyncs
	for start := 0; start < n; start += perTx {
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			for i := start; i < min(start+perTx, n); i++ {
				m := enrolledMachine(i)
				buf, err := json.Marshal(m)
				if err != nil {
					return err
				}
				if err := putMachine(tx, m.ID, m.Name, "", buf); err != nil {
					return err
				}
				sb, err := tx.Bucket(bucketSecrets).CreateBucket([]byte(m.ID))
				if err != nil {
					return err
				}
				for _, name := range []string{"chap", "wireguard"} {
					if err := sb.Put([]byte(name), make([]byte, 80)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if ms, err := db.Machines(ctx); err != nil || len(ms) != n {
		b.Fatalf("Machines() = %d machines, %v; want %d", len(ms), err, n)
	}
	return db
}

// BenchmarkMachines lists every machine, as `sealroot machine list` does.
// Goal: 10,000 machines in under a second.
func BenchmarkMachines(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("machines=%d", n), func(b *testing.B) {
			db := enrolledDB(b, n)
			b.ResetTimer()
			for b.Loop() {
				ms, err := db.Machines(context.Background())
				if err != nil || len(ms) != n {
					b.Fatalf("Machines() = %d, %v", len(ms), err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/list")
		})
	}
}

// BenchmarkAttestationStore runs the store reads and writes of one
// attestation of an approved machine (Machine at hello, Secrets at
// release, UpdateMachine recording the boot) from many machines at once,
// with 10 and with 10,000 machines enrolled. Goal: the rate at 10,000 is
// at least 0.9 of the rate at 10 (`make bench-store` prints the ratio).
func BenchmarkAttestationStore(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("machines=%d", n), func(b *testing.B) {
			ctx := context.Background()
			db := enrolledDB(b, n)
			var next atomic.Int64
			b.SetParallelism(16) // 16 exchanges per GOMAXPROCS
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(uint64(next.Add(1)), 7))
				for pb.Next() {
					if err := attestOnce(ctx, db, testMachine(r.IntN(n)).ID); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attestations/s")
		})
	}
}

func attestOnce(ctx context.Context, db *DB, id string) error {
	if _, err := db.Machine(ctx, id); err != nil {
		return err
	}
	if _, err := db.Secrets(ctx, id); err != nil {
		return err
	}
	now := time.Now()
	_, err := db.UpdateMachine(ctx, id, func(m *Machine) error {
		m.LastSeen = now
		m.LastAddress = "10.0.0.2:4433"
		m.BootCount++
		return nil
	})
	return err
}
