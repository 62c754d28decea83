package main

import (
	"os/exec"
	"strings"
	"testing"
)

// forbiddenTrees are the parts of the module the sealroot binary (server
// and CLI) must never link: test helpers (software TPMs, load generators)
// and the agent. Load generators live in cmd/sealroot-bench.
var forbiddenTrees = []string{
	"github.com/sealroot/sealroot/test/",
	"github.com/sealroot/sealroot/agent/",
	"github.com/sealroot/sealroot/agent",
}

// TestDeps fences the sealroot binary's dependencies.
func TestDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 10 {
		t.Fatalf("go list -deps listed %d packages, want the binary's dependencies", len(pkgs))
	}
	for _, pkg := range pkgs {
		for _, bad := range forbiddenTrees {
			if pkg == bad || strings.HasPrefix(pkg, bad) && strings.HasSuffix(bad, "/") {
				t.Errorf("sealroot depends on %s", pkg)
			}
		}
	}
}
