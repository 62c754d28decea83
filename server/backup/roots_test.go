package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/test/testenv"
)

// fakeDB is a store copy of a few bytes.
type fakeDB []byte

func (d fakeDB) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(d)
	return int64(n), err
}

// heldRoots holds every machine but the ones in use, and records holds.
type heldRoots struct {
	inUse map[string]bool
	bases map[string]bool
	held  []string
}

func (r *heldRoots) Hold(_ context.Context, id string) (func(), error) {
	if r.inUse[id] {
		return nil, fmt.Errorf("machine %s: an iSCSI session is logged in to its root: root in use", id)
	}
	r.held = append(r.held, id)
	return func() {}, nil
}

func (r *heldRoots) Bases() (map[string]bool, error) { return r.bases, nil }

// writeSparseFile makes a size-byte file with data only at offs.
func writeSparseFile(t *testing.T, p string, size int64, offs ...int64) []byte {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o700)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, off := range offs {
		if _, err := f.WriteAt(bytes.Repeat([]byte{byte('a' + i)}, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	return b
}

func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// A volume disk of 64 MiB with 8 KiB of data comes back with the same
// bytes and still only about 8 KiB allocated; a base of a root comes with
// it; a root in use is left out and named.
func TestWithRootsSparse(t *testing.T) {
	state, out := t.TempDir(), filepath.Join(t.TempDir(), "restored")
	os.WriteFile(filepath.Join(state, "secrets.age.key"), []byte("AGE-SECRET-KEY-1TEST"), 0o600)
	const size = 64 << 20
	disk := "volumes/machines/m1/disk.cow"
	want := writeSparseFile(t, filepath.Join(state, disk), size, 0, 32<<20)
	os.WriteFile(filepath.Join(state, "volumes/machines/m1/volume.json"), []byte(`{"base":"ab"}`), 0o600)
	writeSparseFile(t, filepath.Join(state, "volumes/machines/m1/snapshots/s1.cow"), size, 4096)
	writeSparseFile(t, filepath.Join(state, "volumes/machines/busy/disk.cow"), size, 0)
	os.WriteFile(filepath.Join(state, "volumes/machines/busy/volume.json"), []byte(`{"base":"ab"}`), 0o600)
	base := "images/bases/sha256-ab.img"
	writeSparseFile(t, filepath.Join(state, base), 8<<20, 0)
	writeSparseFile(t, filepath.Join(state, "images/bases/sha256-cd.img"), 8<<20, 0) // no root's base

	if a := allocated(t, filepath.Join(state, disk)); a > 1<<20 {
		t.Skipf("the test directory's file system does not keep holes (%d bytes allocated)", a)
	}
	roots := &heldRoots{inUse: map[string]bool{"busy": true}, bases: map[string]bool{"ab": true}}
	var buf bytes.Buffer
	m, err := Write(context.Background(), &buf, Config{StateDir: state, DB: fakeDB("db"), SchemaVersion: 3, Now: time.Now(), Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(m.Roots, m.Bases) != "[m1] [ab]" || len(m.Skipped) != 1 || m.Skipped[0].Machine != "busy" {
		t.Errorf("manifest roots %v bases %v skipped %+v, want [m1] [ab] and busy skipped", m.Roots, m.Bases, m.Skipped)
	}
	if buf.Len() > 1<<20 {
		t.Errorf("backup is %d bytes: the holes were written", buf.Len())
	}
	rm, err := Restore(&buf, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Skipped) != 1 {
		t.Errorf("restored manifest skipped %+v", rm.Skipped)
	}
	got, err := os.ReadFile(filepath.Join(out, disk))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored disk differs (%v)", err)
	}
	if a := allocated(t, filepath.Join(out, disk)); a > 64<<10 {
		t.Errorf("restored disk has %d bytes allocated, want about 8 KiB: holes were filled", a)
	}
	for _, p := range []string{"volumes/machines/m1/snapshots/s1.cow", base, "secrets.age.key", "state.db"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("restored %s: %v", p, err)
		}
	}
	for _, p := range []string{"volumes/machines/busy/disk.cow", "images/bases/sha256-cd.img"} {
		if _, err := os.Stat(filepath.Join(out, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s restored (%v), want left out", p, err)
		}
	}
}

// A real overlay upper (a whiteout, an opaque directory with its
// trusted.overlay.opaque attribute, a user attribute, a setuid file owned
// by another user) comes back such that the same overlay shows the same
// tree.
func TestWithRootsOverlayUpper(t *testing.T) {
	testenv.RequireRoot(t, "mounts an overlay and sets trusted.* attributes")
	state, out := t.TempDir(), filepath.Join(t.TempDir(), "restored")
	lower := t.TempDir()
	os.WriteFile(filepath.Join(lower, "gone"), []byte("lower"), 0o644)
	os.MkdirAll(filepath.Join(lower, "dir"), 0o755)
	os.WriteFile(filepath.Join(lower, "dir", "old"), []byte("lower"), 0o644)
	const id = "0123456789abcdef"
	rootDir := filepath.Join(state, "nfs/roots", id)
	upper, work, mnt := filepath.Join(rootDir, "upper"), filepath.Join(rootDir, "work"), filepath.Join(rootDir, "root")
	for _, d := range []string{upper, work, mnt} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(rootDir, "state.json"), []byte(`{}`), 0o600)
	if err := nfs.MountOverlay(lower, upper, work, mnt); err != nil { // as rootnfs does
		testenv.Unavailable(t, "mount overlay: %v", err)
	}
	if err := errors.Join(
		os.Remove(filepath.Join(mnt, "gone")),
		os.RemoveAll(filepath.Join(mnt, "dir")),
		os.Mkdir(filepath.Join(mnt, "dir"), 0o750),
		os.WriteFile(filepath.Join(mnt, "dir", "new"), []byte("written"), 0o755),
		os.Chown(filepath.Join(mnt, "dir", "new"), 1234, 5678),
		os.Chmod(filepath.Join(mnt, "dir", "new"), os.ModeSetuid|0o755),
		os.Symlink("dir/new", filepath.Join(mnt, "link")),
		unix.Setxattr(filepath.Join(mnt, "dir", "new"), "user.note", []byte("kept"), 0),
	); err != nil {
		t.Fatal(err)
	}
	unmount(t, mnt)
	opaque, err := getXattr(filepath.Join(upper, "dir"), "trusted.overlay.opaque")
	if err != nil {
		t.Fatalf("the kernel's upper has no opaque directory: %v", err)
	}

	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, Config{StateDir: state, DB: fakeDB("db"), Now: time.Now(), Roots: &heldRoots{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(&buf, out); err != nil {
		t.Fatal(err)
	}
	rUpper := filepath.Join(out, "nfs/roots", id, "upper")
	if got, err := getXattr(filepath.Join(rUpper, "dir"), "trusted.overlay.opaque"); err != nil || !bytes.Equal(got, opaque) {
		t.Errorf("restored trusted.overlay.opaque = %q, %v; want %q", got, err, opaque)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(rUpper, "gone"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
		t.Errorf("restored whiteout: %v, mode %o rdev %d; want a 0:0 character device", err, st.Mode, st.Rdev)
	}

	// The restored upper over a copy of the lower (new inodes, as a
	// restored base has), mounted as rootnfs does (index=on: the kernel
	// checks the upper's origin), shows the machine's tree.
	if _, err := getXattr(rUpper, "trusted.overlay.origin"); err == nil {
		t.Error("restored upper keeps the old lower's trusted.overlay.origin")
	}
	rLower := filepath.Join(out, "lower")
	if out, err := exec.Command("cp", "-a", lower, rLower).CombinedOutput(); err != nil {
		t.Fatalf("copy lower: %v: %s", err, out)
	}
	rWork, rMnt := filepath.Join(out, "work"), filepath.Join(out, "mnt")
	os.MkdirAll(rWork, 0o700)
	os.MkdirAll(rMnt, 0o700)
	if err := nfs.MountOverlay(rLower, rUpper, rWork, rMnt); err != nil {
		t.Fatalf("restored upper over the restored base: %v", err)
	}
	defer unmount(t, rMnt)
	if _, err := os.Lstat(filepath.Join(rMnt, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted file visible again: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(rMnt, "dir", "old")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lower file visible in the opaque directory: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(rMnt, "link")); err != nil || string(b) != "written" {
		t.Errorf("link -> dir/new = %q, %v", b, err)
	}
	if err := syscall.Stat(filepath.Join(rMnt, "dir", "new"), &st); err != nil || st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o4755 {
		t.Errorf("dir/new: %v, uid %d gid %d mode %o; want 1234 5678 4755", err, st.Uid, st.Gid, st.Mode&0o7777)
	}
	if v, err := getXattr(filepath.Join(rMnt, "dir", "new"), "user.note"); err != nil || string(v) != "kept" {
		t.Errorf("user.note = %q, %v", v, err)
	}
	if fi, err := os.Stat(filepath.Join(rMnt, "dir")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("dir: %v, %v; want mode 750", fi, err)
	}
}

func mountOverlay(t *testing.T, lower, upper, work, target string) {
	t.Helper()
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, target).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "mount overlay: %v: %s", err, out)
	}
}

func unmount(t *testing.T, target string) {
	t.Helper()
	if err := unix.Unmount(target, 0); err != nil {
		t.Errorf("unmount %s: %v", target, err)
	}
}

// Inside roots a restore keeps only what roots hold: a device node other
// than a whiteout is refused, and a symlink in an upper cannot lead a
// later entry outside the target.
func TestRestoreRootsRefusesUnsafe(t *testing.T) {
	const upper = "nfs/roots/0123456789abcdef/upper/"
	for _, tc := range []struct {
		name string
		hdrs []tar.Header
	}{
		{"device_in_upper", []tar.Header{{Name: upper + "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}}},
		{"block_device_in_volume", []tar.Header{{Name: "volumes/machines/m1/disk.img", Typeflag: tar.TypeBlock, Devmajor: 8}}},
		{"hardlink", []tar.Header{{Name: upper + "l", Typeflag: tar.TypeLink, Linkname: "state.db"}}},
		{"symlink_out", []tar.Header{
			{Name: upper + "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
			{Name: upper + "etc/evil", Typeflag: tar.TypeReg, Mode: 0o644},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			gz := gzip.NewWriter(&buf)
			tw := tar.NewWriter(gz)
			for _, h := range tc.hdrs {
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
			}
			tw.Close()
			gz.Close()
			_, err := Restore(&buf, t.TempDir())
			if err == nil {
				t.Fatal("Restore accepted it")
			}
			t.Logf("refused: %v", err)
			if _, err := os.Stat("/etc/evil"); err == nil {
				t.Fatal("a restore wrote /etc/evil")
			}
		})
	}
}
