package vmtest

import (
	"flag"
	"os"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
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
	testenv.RequireTools(t, tools...)
}
