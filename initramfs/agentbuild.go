package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/sealroot/sealroot/version"
)

// BuildAgent compiles the Go main package pkg (e.g. "./cmd/sealroot-agent",
// resolved in the current module) into out as a static, stripped,
// reproducible linux/amd64 binary: CGO_ENABLED=0 GOAMD64=v1, -trimpath,
// -buildvcs=false, -ldflags="-s -w -buildid=", stamped with this
// binary's version and commit (package version).
func BuildAgent(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid= "+version.LDFlags(), "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
