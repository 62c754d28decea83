package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// forbidden are packages that must never reach the initramfs binary:
// server-side storage and CLI, cgo TPM simulators, build tooling.
var forbidden = []string{
	"go.etcd.io/bbolt",
	// The etcd store (several servers) and what its client pulls in.
	"go.etcd.io/etcd",
	"google.golang.org/grpc",
	"github.com/spf13/cobra",
	"github.com/google/go-tpm-tools",
	"github.com/u-root/mkuimage",
	"golang.org/x/tools",
	"net/http/pprof",
	// Decompressors: the initramfs ships .ko files as they are and the
	// kernel decompresses compressed ones (agent/kmod), so these only
	// cost bytes of every boot.
	"github.com/klauspost/compress",
	"github.com/ulikunitz/xz",
	"github.com/u-root/u-root/pkg/kmodule",
}

// serverPrefix is the server's tree: the agent shares the protocol with
// the server through the top-level packages wire and iscsi/pdu only.
const serverPrefix = "github.com/sealroot/sealroot/server/"

// TestDeps fences the agent's dependencies, built as the initramfs builds
// it (CGO_ENABLED=0).
func TestDeps(t *testing.T) {
	gobin := testenv.LookTool(t, "go")
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
		if strings.HasPrefix(pkg, serverPrefix) {
			t.Errorf("sealroot-agent depends on server package %s", pkg)
		}
	}
}
