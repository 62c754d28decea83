package console

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestOpen_writes_every_active_console(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(sys, "class/tty/console"), 0o755)
	os.WriteFile(filepath.Join(sys, "class/tty/console/active"), []byte("tty0 ttyS0 ttyS1\n"), 0o644)
	for _, n := range []string{"tty0", "ttyS0"} { // ttyS1 does not open
		os.WriteFile(filepath.Join(dev, n), nil, 0o644)
	}
	w, err := Open(sys, dev)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := w.Names(); !slices.Equal(got, []string{"tty0", "ttyS0"}) {
		t.Errorf("Names() = %v", got)
	}
	line := "sealroot: waiting for approval: EK fingerprint sha256:0123abcd\n"
	if n, err := fmt.Fprint(w, line); err != nil || n != len(line) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	for _, n := range []string{"tty0", "ttyS0"} {
		if b, _ := os.ReadFile(filepath.Join(dev, n)); string(b) != line {
			t.Errorf("%s got %q, want %q", n, b, line)
		}
	}

	// A console registered later (hvc0 once its module loads) gets the
	// lines from then on.
	os.WriteFile(filepath.Join(dev, "hvc0"), nil, 0o644)
	os.WriteFile(filepath.Join(sys, "class/tty/console/active"), []byte("hvc0 tty0 ttyS0\n"), 0o644)
	fmt.Fprint(w, "second\n")
	if b, _ := os.ReadFile(filepath.Join(dev, "hvc0")); string(b) != "second\n" {
		t.Errorf("hvc0 got %q, want the line written after it became active", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dev, "ttyS0")); string(b) != line+"second\n" {
		t.Errorf("ttyS0 got %q", b)
	}
}

func TestOpen_none(t *testing.T) {
	sys := t.TempDir()
	os.MkdirAll(filepath.Join(sys, "class/tty/console"), 0o755)
	os.WriteFile(filepath.Join(sys, "class/tty/console/active"), []byte("ttyS9\n"), 0o644)
	if _, err := Open(sys, t.TempDir()); err == nil {
		t.Error("Open with no console that opens succeeded")
	}
	if _, err := Open(t.TempDir(), t.TempDir()); err == nil {
		t.Error("Open without sysfs succeeded")
	}
}

func TestActive_rejects_paths(t *testing.T) {
	sys := t.TempDir()
	os.MkdirAll(filepath.Join(sys, "class/tty/console"), 0o755)
	os.WriteFile(filepath.Join(sys, "class/tty/console/active"), []byte("../../etc/passwd tty0\n"), 0o644)
	if got, _ := Active(sys); !slices.Equal(got, []string{"tty0"}) {
		t.Errorf("Active = %v, want [tty0]", got)
	}
}
