package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTestLog(t testing.TB) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

func TestRecordAndReadAll(t *testing.T) {
	l, path := openTestLog(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))
	want := []Entry{
		{Time: at, Actor: "agent", Remote: "192.0.2.1:4433", MachineID: "ab", Action: "attest", Outcome: "refused", Check: "quote-signature", Reason: "bad\nsignature"},
		{Time: at, Actor: "operator:0", MachineID: "ab", Action: "approve", Outcome: "ok"},
	}
	for _, e := range want {
		if err := l.Record(e); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	// Written before Record returns, even without a sync or Close.
	got, err := ReadAll(path)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ReadAll = %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		w := want[i]
		w.Time = w.Time.UTC()
		if got[i] != w {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], w)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
}

func TestZeroTimeIsFilled(t *testing.T) {
	l, path := openTestLog(t)
	before := time.Now()
	if err := l.Record(Entry{Actor: "agent", Action: "attest", Outcome: "pending"}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAll(path)
	if err != nil || len(got) != 1 {
		t.Fatalf("ReadAll = %v, %v", got, err)
	}
	if got[0].Time.Before(before.Add(-time.Second)) || got[0].Time.Location() != time.UTC {
		t.Errorf("time = %v, want now in UTC", got[0].Time)
	}
}

func TestAppendsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for i := range 3 {
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Record(Entry{Action: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	got, err := ReadAll(path)
	if err != nil || len(got) != 3 || got[0].Action != "0" || got[2].Action != "2" {
		t.Errorf("ReadAll = %+v, %v; want 3 entries in order", got, err)
	}
}

func TestConcurrentRecords(t *testing.T) {
	l, path := openTestLog(t)
	const writers, each = 8, 100
	reason := string(make([]byte, 3000)) // long lines must not interleave
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := l.Record(Entry{Actor: fmt.Sprint(w), Action: fmt.Sprint(i), Reason: reason}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAll(path)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if len(got) != writers*each {
		t.Errorf("ReadAll = %d entries, want %d", len(got), writers*each)
	}
}

func TestClose(t *testing.T) {
	l, _ := openTestLog(t)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := l.Record(Entry{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close = %v, want ErrClosed", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close = %v, want ErrClosed", err)
	}
}

func TestReadAllDamage(t *testing.T) {
	good := `{"action":"attest","outcome":"allowed"}` + "\n"
	tests := []struct {
		name    string
		content string
		want    int
		wantErr bool
	}{
		{"empty", "", 0, false},
		{"partial_last_line_skipped", good + `{"action":"att`, 1, false},
		{"blank_lines_skipped", good + "\n" + good, 2, false},
		{"malformed_middle_line", good + "garbage\n" + good, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadAll(path)
			if (err != nil) != tt.wantErr || len(got) != tt.want {
				t.Errorf("ReadAll = %d entries, %v; want %d, error %v", len(got), err, tt.want, tt.wantErr)
			}
		})
	}
}

func BenchmarkRecord(b *testing.B) {
	l, _ := openTestLog(b)
	e := Entry{Actor: "agent", Remote: "192.0.2.1:4433", MachineID: "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", Action: "attest", Outcome: "allowed"}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Record(e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRecordConcurrent records from 64 goroutines at once, as a boot
// storm does: they share fsyncs.
func BenchmarkRecordConcurrent(b *testing.B) {
	l, _ := openTestLog(b)
	e := Entry{Actor: "agent", Remote: "192.0.2.1:4433", MachineID: "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", Action: "attest", Outcome: "allowed"}
	b.SetParallelism(32) // × GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Record(e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
