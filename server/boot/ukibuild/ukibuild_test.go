package ukibuild

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/uki"
)

func TestRefresh(t *testing.T) {
	testenv.RequireTools(t, uki.DefaultStub)
	dir := t.TempDir()
	in := Inputs{
		Kernel:  filepath.Join(dir, "vmlinuz"),
		Initrd:  filepath.Join(dir, "initramfs.cpio.gz"),
		Cmdline: "console=ttyS0 panic=10",
		Out:     filepath.Join(dir, "uki.efi"),
	}
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(in.Kernel, "kernel")
	write(in.Initrd, "initrd one")
	b := New(in)
	refresh := func(want bool) []byte {
		t.Helper()
		built, err := b.Refresh()
		if err != nil {
			t.Fatal(err)
		}
		if built != want {
			t.Fatalf("Refresh built = %v, want %v", built, want)
		}
		img, err := os.ReadFile(in.Out)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	initrdOf := func(img []byte) string {
		t.Helper()
		secs, err := uki.Sections(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secs {
			if s.Name == uki.SectionInitrd {
				return string(s.Data[:s.VirtualSize])
			}
		}
		t.Fatal("no .initrd section")
		return ""
	}

	first := refresh(true)
	if got := initrdOf(first); got != "initrd one" {
		t.Fatalf(".initrd = %q", got)
	}
	if again := refresh(false); !bytes.Equal(again, first) {
		t.Fatal("unchanged inputs: output changed")
	}

	// A changed initramfs (an operator's update, or tampering) is in the
	// next UKI, so the measurements show it.
	write(in.Initrd, "initrd two")
	if got := initrdOf(refresh(true)); got != "initrd two" {
		t.Fatalf("after the initramfs changed: .initrd = %q", got)
	}

	// A replaced output is rebuilt from the inputs.
	write(in.Out, "not a UKI")
	if got := initrdOf(refresh(true)); got != "initrd two" {
		t.Fatalf("after the output was replaced: .initrd = %q", got)
	}

	// Same content, new modification time: rebuilt, byte for byte equal.
	prev, _ := os.ReadFile(in.Out)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(in.Kernel, later, later); err != nil {
		t.Fatal(err)
	}
	if img := refresh(true); !bytes.Equal(img, prev) {
		t.Fatal("rebuild from the same inputs is not reproducible")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".uki.efi.tmp-*")); len(leftovers) > 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

func TestRefresh_errors(t *testing.T) {
	testenv.RequireTools(t, uki.DefaultStub)
	dir := t.TempDir()
	in := Inputs{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "missing"), Out: filepath.Join(dir, "uki.efi")}
	if err := os.WriteFile(in.Kernel, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(in).Refresh(); err == nil {
		t.Fatal("missing initramfs: no error")
	}
	in.Initrd = in.Kernel
	in.Stub = filepath.Join(dir, "no-stub")
	if _, err := New(in).Refresh(); err == nil {
		t.Fatal("missing stub: no error")
	}
	if _, err := os.Stat(in.Out); err == nil {
		t.Fatal("failed builds wrote an output")
	}
}
