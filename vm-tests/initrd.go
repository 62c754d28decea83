package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/u-root/mkuimage/cpio"

	"github.com/sealroot/sealroot/initramfs"
	"github.com/sealroot/sealroot/test/testenv"
)

// BuildStatic compiles the Go main package pkg (a path relative to the
// current directory or an import path) into a static linux/amd64 binary at
// out, suitable as /init.
func BuildStatic(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, b)
	}
	return nil
}

// WriteInitramfs writes a newc cpio archive to path holding the root
// directory (0755), dev/console (char 5,1) and init (0755), followed by
// extra records. All records are reproducible (uid/gid/mtime 0).
func WriteInitramfs(path string, init []byte, extra ...cpio.Record) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriter(f)
	w := cpio.Newc.Writer(bw)
	recs := []cpio.Record{
		cpio.Directory(".", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticRecord(init, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
	}
	recs = append(recs, extra...)
	cpio.MakeAllReproducible(recs)
	if err := cpio.WriteRecords(w, recs); err != nil {
		return fmt.Errorf("write cpio %s: %w", path, err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fmt.Errorf("write cpio %s: %w", path, err)
	}
	return bw.Flush()
}

// HelloInitramfs builds testdata/hello into an initramfs in t.TempDir and
// returns its path. The init prints "sealroot: hello from init", whether
// /dev/tpmrm0 exists and the event log size, then powers off.
func HelloInitramfs(ctx context.Context, t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	if err := BuildStatic(ctx, "github.com/sealroot/sealroot/vm-tests/testdata/hello", bin); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	init, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hello.cpio")
	if err := WriteInitramfs(out, init); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	return out
}

// Kernel returns the path of Debian's current amd64 kernel, fetched once
// into build/cache/ of the repository (see initramfs.FetchKernel). A
// missing apt tool skips t, or fails it under CI=true.
func Kernel(ctx context.Context, t testing.TB) string {
	t.Helper()
	k, err := initramfs.FetchKernel(ctx, CacheDir(t))
	if errors.Is(err, initramfs.ErrToolMissing) && !testenv.CI() {
		t.Skipf("vmtest: %v", err)
	}
	if err != nil {
		t.Fatalf("vmtest: fetch kernel: %v", err)
	}
	return k.VMLinuz
}

// CacheDir returns build/cache under the repository root (the directory
// holding go.mod), or $SEALROOT_CACHE if set.
func CacheDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SEALROOT_CACHE"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "build", "cache")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("vmtest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// AppendArchive returns initrd followed by an uncompressed newc archive of
// recs. The kernel reads an archive that follows a compressed one only at
// a 4-byte aligned offset and skips the zeros before it, so initrd is
// padded first.
func AppendArchive(initrd []byte, recs ...cpio.Record) ([]byte, error) {
	out := bytes.NewBuffer(append([]byte(nil), initrd...))
	out.Write(make([]byte, (4-out.Len()%4)%4))
	w := cpio.Newc.Writer(out)
	cpio.MakeAllReproducible(recs)
	if err := cpio.WriteRecords(w, recs); err != nil {
		return nil, fmt.Errorf("append archive: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("append archive: %w", err)
	}
	return out.Bytes(), nil
}
