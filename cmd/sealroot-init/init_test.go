package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// The first stage must not read crypto/rand before it has seeded the CRNG:
// that blocks in getrandom(2) on a machine whose CRNG is not ready, the
// very trap it exists to avoid. strace -k shows each getrandom call with
// its Go stack; only entropy.Ready's non-blocking probe may appear (on
// kernels with a vDSO getrandom the probe's syscall shows flags 0, so the
// caller, not the flags, is what is checked).
func TestNoBlockingGetrandomAtStart(t *testing.T) {
	strace := testenv.LookTool(t, "strace")
	bin := filepath.Join(t.TempDir(), "sealroot-init")
	build := exec.CommandContext(context.Background(), "go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// Not PID 1 and the agent is missing: it checks the CRNG, then fails
	// to exec and exits; we only look at what happened before.
	out, _ := exec.Command(strace, "-f", "-k", "-e", "trace=getrandom", bin, "-agent", "/nonexistent", "-tpm", "/nonexistent").CombinedOutput()
	if bad := cryptoRandCalls(string(out)); len(bad) > 0 {
		t.Errorf("crypto/rand read before the CRNG was seeded:\n%s", strings.Join(bad, "\n---\n"))
	}
	if !strings.Contains(string(out), "cannot start the agent /nonexistent") {
		t.Errorf("did not try to exec the agent:\n%s", out)
	}
}

// cryptoRandCalls returns the strace -k stacks of getrandom calls made by
// crypto/rand (its sysrand backend).
func cryptoRandCalls(strace string) []string {
	var bad []string
	blocks := strings.Split(strace, "getrandom(")
	for _, b := range blocks[1:] {
		stack := b
		if i := strings.Index(b, "\n[pid"); i >= 0 {
			stack = b[:i]
		}
		if strings.Contains(stack, "crypto/internal/sysrand") || strings.Contains(stack, "crypto/rand.") {
			bad = append(bad, "getrandom("+stack)
		}
	}
	return bad
}
