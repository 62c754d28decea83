package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The flood bench runs end to end on a small scale and prints its figures
// and the ratio line (a format check: figures are never pass/fail).
func TestBenchFloodSmall(t *testing.T) {
	r := runBench(t, filepath.Join(t.TempDir(), "unused.sock"), "flood",
		"--idle", "4", "--half-open", "4", "--garbage", "4", "--sources", "2", "-n", "2", "--settle", "300ms", "--junk-nice", "-1")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if last := lines[len(lines)-1]; !regexp.MustCompile(`^flood: attest p99 during/before=[0-9.]+$`).MatchString(last) {
		t.Errorf("last line = %q, want the ratio line", last)
	}
	for _, want := range []string{"flood from one address:", "flood from 2 addresses:", "junk audit records 0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestBenchFloodUsage(t *testing.T) {
	if r := runBench(t, "unused.sock", "flood", "--sources", "0"); r.code != 2 {
		t.Errorf("--sources 0: exit %d, want 2 (usage)", r.code)
	}
}
