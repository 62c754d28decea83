package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/test/testenv"
)

func needTools(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
}

func newStore(t *testing.T) *Store {
	t.Helper()
	needTools(t)
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // let TempDir remove immutable bases
		ents, _ := os.ReadDir(filepath.Join(dir, "bases"))
		for _, e := range ents {
			setImmutable(filepath.Join(dir, "bases", e.Name()), false)
		}
	})
	return s
}

// makeTree writes a small tree with a subdirectory, a symlink, a hard link,
// non-root ownership and a systemd-escaped name with a backslash.
func makeTree(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "src")
	files := map[string]string{"etc/hostname": "sealroot\n", "bin/init": "#!/bin/sh\necho hi\n", "big": strings.Repeat("x", 100000),
		`lib/systemd/system/system-systemd\x2dcryptsetup.slice`: "[Unit]\n"}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "bin/init"), 0o755)
	os.Symlink("/etc/hostname", filepath.Join(dir, "hostlink"))
	os.Link(filepath.Join(dir, "big"), filepath.Join(dir, "big2"))
	os.Lchown(filepath.Join(dir, "etc/hostname"), 1000, 1000)
	when := time.Unix(1700000000, 0)
	// Whole seconds everywhere, symlinks included: Go's tar writer rounds
	// sub-second times to the nearest second while imports truncate them.
	ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		return nil
	})
	return dir
}

// tarTree archives dir the way `tar -C dir .` would.
func tarTree(t *testing.T, dir string, gz bool) string {
	out := filepath.Join(t.TempDir(), "src.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.Writer = f
	if gz {
		zw := gzip.NewWriter(f)
		defer zw.Close()
		w = zw
	}
	tw := tar.NewWriter(w)
	defer tw.Close()
	seen := map[uint64]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		fi, _ := os.Lstat(p)
		link, _ := os.Readlink(p)
		h, _ := tar.FileInfoHeader(fi, link)
		rel, _ := filepath.Rel(dir, p)
		h.Name = "./" + rel
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := seen[st.Ino]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				seen[st.Ino] = h.Name
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := os.ReadFile(p)
			tw.Write(b)
		}
		return nil
	})
	return out
}

func TestImportReproducible(t *testing.T) {
	s := newStore(t)
	src := makeTree(t)
	ctx := context.Background()
	var calls int
	fromDir, err := s.Import(ctx, "dir", src, func(done, total int64) { calls++ })
	if err != nil {
		t.Fatalf("Import(dir): %v", err)
	}
	if calls == 0 {
		t.Error("no progress reported")
	}
	for _, tt := range []struct {
		name string
		gz   bool
	}{{"tar", false}, {"tar_gz", true}} {
		t.Run(tt.name, func(t *testing.T) {
			im, err := s.Import(ctx, tt.name, tarTree(t, src, tt.gz), nil)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if im.Digest != fromDir.Digest || im.TreeDigest != fromDir.TreeDigest {
				t.Fatalf("digest = %s (tree %s), want %s (tree %s) as from the directory",
					im.Digest, im.TreeDigest, fromDir.Digest, fromDir.TreeDigest)
			}
		})
	}
	if err := s.Verify(fromDir.Digest); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	base, _ := s.BasePath(fromDir.Digest)
	fi, err := os.Stat(base)
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("base mode = %v (%v), want 0444", fi.Mode(), err)
	}
	if out, err := exec.Command("e2fsck", "-fn", base).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	out, err := exec.Command("debugfs", "-R", "cat /etc/hostname", base).Output()
	if err != nil || string(out) != "sealroot\n" {
		t.Fatalf("debugfs cat = %q, %v", out, err)
	}
	out, _ = exec.Command("debugfs", "-R", "stat /etc/hostname", base).Output()
	if !strings.Contains(string(out), "User:  1000   Group:  1000") {
		t.Errorf("ownership not kept:\n%s", out)
	}
	tree, _ := s.TreePath(fromDir.Digest)
	if b, err := os.ReadFile(filepath.Join(tree, "bin/init")); err != nil || !strings.Contains(string(b), "echo hi") {
		t.Errorf("tree kept for NFS: %q, %v", b, err)
	}
}

func TestImportRefusesUnsafe(t *testing.T) {
	s := newStore(t)
	tests := []struct {
		name    string
		entries []tar.Header
	}{
		{"dotdot", []tar.Header{{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"nested_dotdot", []tar.Header{{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"absolute", []tar.Header{{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"through_symlink", []tar.Header{
			{Name: "lnk", Typeflag: tar.TypeSymlink, Linkname: "/tmp"},
			{Name: "lnk/evil", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"through_relative_symlink", []tar.Header{
			{Name: "lnk", Typeflag: tar.TypeSymlink, Linkname: "../.."},
			{Name: "lnk/evil", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"hardlink_outside", []tar.Header{{Name: "x", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}}},
		{"device_outside_dev", []tar.Header{{Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8, Mode: 0o600}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "evil.tar")
			f, _ := os.Create(p)
			tw := tar.NewWriter(f)
			for _, h := range tt.entries {
				tw.WriteHeader(&h)
			}
			tw.Close()
			f.Close()
			_, err := s.Import(context.Background(), "evil", p, nil)
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Import = %v, want ErrUnsafePath", err)
			}
		})
	}
	if _, err := os.Stat("/tmp/evil"); err == nil {
		t.Error("/tmp/evil exists")
	}
}

func TestRemoveGCVerify(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	src := makeTree(t)
	a, err := s.Import(ctx, "a", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "extra"), []byte("more"), 0o644)
	b, err := s.Import(ctx, "b", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest == b.Digest {
		t.Fatal("different trees, same digest")
	}
	if _, err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove twice = %v, want ErrNotFound", err)
	}
	// a is unnamed but in use by a machine: kept. Then unused: removed.
	removed, err := s.GC(func(d string) bool { return d == a.Digest })
	if err != nil || len(removed) != 0 {
		t.Fatalf("GC(in use) = %v, %v; want nothing removed", removed, err)
	}
	removed, err = s.GC(func(string) bool { return false })
	if err != nil || len(removed) != 1 || removed[0] != a.Digest {
		t.Fatalf("GC = %v, %v; want [%s]", removed, err, a.Digest)
	}
	if _, err := s.BasePath(a.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("BasePath(removed) = %v, want ErrNotFound", err)
	}
	if _, err := s.BasePath(b.Digest); err != nil {
		t.Fatalf("named base removed: %v", err)
	}
	list, _ := s.List()
	if len(list) != 1 || list[0].Name != "b" {
		t.Fatalf("List = %+v, want [b]", list)
	}
	// Tamper with b's base: Verify notices.
	p, _ := s.BasePath(b.Digest)
	setImmutable(p, false)
	os.Chmod(p, 0o644)
	f, _ := os.OpenFile(p, os.O_WRONLY, 0)
	f.WriteAt([]byte{1}, 1<<20)
	f.Close()
	if err := s.Verify(b.Digest); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Verify(tampered) = %v, want ErrDigestMismatch", err)
	}
}

// Building the same tree again later gives the same image: mke2fs reads
// the tree's directories (bumping their atime under relatime) and stamps
// times, none of which may depend on the wall clock.
func TestImportSameTreeLaterSameImage(t *testing.T) {
	s := newStore(t)
	src := makeTree(t)
	ctx := context.Background()
	first, err := s.Import(ctx, "first", src, nil)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if _, err := s.Remove("first"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // cross a second boundary
	again, err := s.Import(ctx, "again", src, nil)
	if err != nil {
		t.Fatalf("Import again: %v", err)
	}
	if again.Digest != first.Digest {
		t.Fatalf("same tree rebuilt later: digest %s, want %s", again.Digest, first.Digest)
	}
}

// Importing to a name adds a version; a version keeps its digest; the
// same content again adds none; a removed version's number is not reused;
// an index from before versions reads as version 1.
func TestImportVersions(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	src := makeTree(t)
	v1, err := s.Import(ctx, "deb", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Import(ctx, "deb", src, nil)
	if err != nil || again.Version != 1 {
		t.Fatalf("Import(same content) = %+v, %v; want v1 again", again, err)
	}
	os.WriteFile(filepath.Join(src, "extra"), []byte("v2"), 0o644)
	v2, err := s.Import(ctx, "deb", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Ref() != "deb@v1" || v2.Ref() != "deb@v2" || v1.Digest == v2.Digest {
		t.Fatalf("versions = %s %s, %s %s; want deb@v1, deb@v2 with different digests", v1.Ref(), v1.Digest, v2.Ref(), v2.Digest)
	}
	for _, tc := range []struct{ ref, want string }{{"deb", v2.Digest}, {"deb@v1", v1.Digest}, {"deb@v2", v2.Digest}} {
		if im, err := s.Get(tc.ref); err != nil || im.Digest != tc.want {
			t.Errorf("Get(%s) = %v, %v; want %.12s", tc.ref, im, err, tc.want)
		}
	}
	for _, ref := range []string{"deb@v3", "deb@2", "deb@v0", "deb@v01", "@v1", "deb@v1@v2"} {
		if _, err := s.Get(ref); err == nil {
			t.Errorf("Get(%s) succeeded", ref)
		}
	}
	// A root made on v1 keeps v1, latest or pinned; a new root takes the
	// reference; a base of another name is not kept.
	for _, tc := range []struct{ ref, base, want string }{
		{"deb", v1.Digest, v1.Digest}, {"deb@v2", v1.Digest, v1.Digest}, {"deb", "", v2.Digest},
		{"deb@v1", "", v1.Digest}, {"deb", strings.Repeat("0", 64), v2.Digest},
	} {
		if im, err := s.Resolve(tc.ref, tc.base); err != nil || im.Digest != tc.want {
			t.Errorf("Resolve(%s, %.12s) = %v, %v; want %.12s", tc.ref, tc.base, im, err, tc.want)
		}
	}
	list, _ := s.List()
	if len(list) != 2 || list[0].Version != 1 || list[1].Version != 2 {
		t.Fatalf("List = %+v, want deb@v1, deb@v2", list)
	}
	if rm, err := s.Remove("deb@v2"); err != nil || len(rm) != 1 || rm[0].Version != 2 {
		t.Fatalf("Remove(deb@v2) = %v, %v", rm, err)
	}
	os.WriteFile(filepath.Join(src, "extra"), []byte("v3"), 0o644)
	v3, err := s.Import(ctx, "deb", src, nil)
	if err != nil || v3.Version != 3 {
		t.Fatalf("Import after removing v2 = %+v, %v; want v3", v3, err)
	}

	// The index before versions.
	old := `{"images": {"old": {"name": "old", "digest": "` + v1.Digest + `", "size": 1}}}`
	if err := os.WriteFile(filepath.Join(s.dir, "index.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if im, err := s.Get("old@v1"); err != nil || im.Digest != v1.Digest {
		t.Fatalf("Get(old@v1) from an index before versions = %v, %v", im, err)
	}
}
