package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// forbidden are packages that must never reach the initramfs binary:
// server-side storage and CLI, cgo TPM simulators, build tooling.
var forbidden = []string{
	"go.etcd.io/bbolt",
	"github.com/spf13/cobra",
	"github.com/google/go-tpm-tools",
	"github.com/u-root/mkuimage",
	"golang.org/x/tools",
	"net/http/pprof",
}

// serverAllowed are the only server packages the agent may import: the
// wire protocol, the credential format it opens, and the iSCSI PDU codec
// (standard library only) its initiator logs in with.
var serverAllowed = map[string]bool{
	"github.com/sealroot/sealroot/wire":        true,
	"github.com/sealroot/sealroot/server/seal": true,
	"github.com/sealroot/sealroot/iscsi/pdu":   true,
}

// TestDeps fences the agent's dependencies, built as the initramfs builds
// it (CGO_ENABLED=0).
func TestDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	cmd := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, bad := range forbidden {
			if pkg == bad || strings.HasPrefix(pkg, bad+"/") {
				t.Errorf("sealroot-agent depends on %s", pkg)
			}
		}
		if strings.HasPrefix(pkg, "github.com/sealroot/sealroot/server/") && !serverAllowed[pkg] {
			t.Errorf("sealroot-agent depends on server package %s", pkg)
		}
	}
}
