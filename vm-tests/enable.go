package vmtest

import (
	"flag"
	"os"
	"os/exec"
	"testing"
)

var runVMTests = flag.Bool("vm", false, "run QEMU VM tests (or set SEALROOT_VM=1)")

// Enabled reports whether VM tests were asked for with -vm or SEALROOT_VM=1.
func Enabled() bool {
	return *runVMTests || os.Getenv("SEALROOT_VM") == "1"
}

// SkipUnlessEnabled skips t unless VM tests are enabled.
func SkipUnlessEnabled(t testing.TB) {
	t.Helper()
	if !Enabled() {
		t.Skip("VM test: run with `go test ./vm-tests -vm` or SEALROOT_VM=1")
	}
}

// RequireTools skips t when one of the tools (commands on PATH or absolute
// file paths) is missing; under CI=true it fails t instead.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if toolExists(tool) {
			continue
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("vmtest: %s is missing (CI=true)", tool)
		}
		t.Skipf("vmtest: %s is missing", tool)
	}
}

func toolExists(tool string) bool {
	if tool != "" && tool[0] == '/' {
		_, err := os.Stat(tool)
		return err == nil
	}
	_, err := exec.LookPath(tool)
	return err == nil
}
