package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestRotation records from several goroutines into a log that rotates
// every few records, keeping enough files: every record is in exactly one
// file, each file holds whole lines and stays within MaxBytes.
func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	const maxBytes = 1000
	l, err := OpenRotating(path, Rotation{MaxBytes: maxBytes, Keep: 1000})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := l.Record(Entry{Actor: "agent", Action: "attest", Outcome: "ok", Reason: fmt.Sprintf("%d/%d", w, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := Files(path)
	if len(files) < 10 {
		t.Fatalf("Files = %d files, want the log rotated many times", len(files))
	}
	seen := map[string]int{}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over MaxBytes %d", f, fi.Size(), maxBytes)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
		es, err := ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			seen[e.Reason]++
		}
	}
	for w := range workers {
		for i := range each {
			if n := seen[fmt.Sprintf("%d/%d", w, i)]; n != 1 {
				t.Errorf("record %d/%d is in %d files, want 1", w, i, n)
			}
		}
	}
}

func TestRotation_keep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenRotating(path, Rotation{MaxBytes: 300, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := l.Record(Entry{Actor: "agent", Action: "attest", Outcome: "ok", Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	files := Files(path)
	if want := []string{path + ".2", path + ".1", path}; fmt.Sprint(files) != fmt.Sprint(want) {
		t.Errorf("Files = %v, want %v", files, want)
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Errorf("%s.3 kept beyond Keep=2", path)
	}
	// The newest record is last in the current file, the files in order.
	var all []Entry
	for _, f := range files {
		es, _ := ReadAll(f)
		all = append(all, es...)
	}
	if len(all) == 0 || all[len(all)-1].Reason != "39" {
		t.Fatalf("last record %v, want 39", all)
	}
	for i := 1; i < len(all); i++ {
		var a, b int
		fmt.Sscan(all[i-1].Reason, &a)
		fmt.Sscan(all[i].Reason, &b)
		if b != a+1 {
			t.Errorf("records out of order or missing across files: %d then %d", a, b)
		}
	}
}

// TestRotation_fails: when the rotation cannot be done (here <path>.1 is
// a directory in the way), records go on into the current file and the
// failure is reported; nothing is lost.
func TestRotation_fails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	os.MkdirAll(filepath.Join(path+".1", "in-the-way"), 0o700)
	l, err := OpenRotating(path, Rotation{MaxBytes: 200, Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 10 {
		if err := l.Record(Entry{Actor: "agent", Action: "attest", Outcome: "ok", Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if l.RotationError() == nil {
		t.Error("a failed rotation was not reported")
	}
	if es, _ := ReadAll(path); len(es) != 10 {
		t.Errorf("log holds %d records, want all 10", len(es))
	}
}
