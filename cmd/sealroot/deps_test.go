package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
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
	gobin := testenv.LookTool(t, "go")
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

// recordPackages hold the server's stored records. The CLI and the API
// client speak the admin API's view types (server/api) only, so the
// store's schema can change without changing `sealroot ... --json`.
var recordPackages = []string{
	"github.com/sealroot/sealroot/server/store",
	"github.com/sealroot/sealroot/server/image",
	"github.com/sealroot/sealroot/server/machines",
}

// TestCLIUsesAPIViews fences the CLI (its own imports; `sealroot serve`
// links the whole server through package server) and the API client with
// everything it links away from the stored records.
func TestCLIUsesAPIViews(t *testing.T) {
	gobin := testenv.LookTool(t, "go")
	list := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command(gobin, append([]string{"list"}, args...)...).Output()
		if err != nil {
			t.Fatalf("go list %q: %v", args, err)
		}
		return strings.Fields(string(out))
	}
	cliImports := list("-f", `{{join .Imports " "}}`, "./cli")
	clientDeps := list("-deps", "-f", "{{.ImportPath}}", "github.com/sealroot/sealroot/server/api/client")
	if !slices.Contains(cliImports, "github.com/sealroot/sealroot/server/api") ||
		!slices.Contains(clientDeps, "github.com/sealroot/sealroot/server/api") {
		t.Fatalf("go list found no server/api in the CLI's imports %q or the client's deps: the fence checks nothing", cliImports)
	}
	for _, bad := range recordPackages {
		if slices.Contains(cliImports, bad) {
			t.Errorf("cmd/sealroot/cli imports %s; use the server/api view types", bad)
		}
		if slices.Contains(clientDeps, bad) {
			t.Errorf("server/api/client depends on %s; use the server/api view types", bad)
		}
	}
}
