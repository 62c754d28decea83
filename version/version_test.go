package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// TestLDFlags builds a program with the linker flags and checks that it
// reports them, as the agent built by `sealroot initramfs build` does.
func TestLDFlags(t *testing.T) {
	gobin := testenv.LookTool(t, "go")
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	prog := "package main\nimport (\"fmt\"; \"github.com/sealroot/sealroot/version\")\nfunc main() { fmt.Print(version.String()) }\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "v")
	ld := "-X github.com/sealroot/sealroot/version.version=9.8.7 -X github.com/sealroot/sealroot/version.commit=0123456789abcdef0123"
	if out, err := exec.Command(gobin, "build", "-ldflags", ld, "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "9.8.7 (commit 0123456789ab)"; got != want {
		t.Errorf("version.String() = %q, want %q", got, want)
	}
}

func TestUnstamped(t *testing.T) {
	if got := Version(); got != Dev {
		t.Errorf("Version() in a test binary = %q, want %q", got, Dev)
	}
	if !strings.Contains(String(), "(commit ") {
		t.Errorf("String() = %q", String())
	}
}
