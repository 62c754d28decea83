package eventlog

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// TestDeps fences eventlog below the store: it owns Event, and the store
// embeds it (store.BootState.Events), never the other way round.
func TestDeps(t *testing.T) {
	gobin := testenv.LookTool(t, "go")
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/sealroot/sealroot/server/eventlog") {
		t.Fatalf("go list -deps = %q, want eventlog itself among them", deps)
	}
	if slices.Contains(deps, "github.com/sealroot/sealroot/server/store") {
		t.Error("eventlog depends on server/store; the store embeds eventlog.Event, not the reverse")
	}
}
