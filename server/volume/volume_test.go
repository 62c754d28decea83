package volume

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"

	"golang.org/x/sys/unix"
)

type fakeBases map[string]string

func (b fakeBases) BasePath(d string) (string, error) {
	if p, ok := b[d]; ok {
		return p, nil
	}
	return "", fmt.Errorf("base %s: not found", d)
}

// makeBase writes a random read-only base of size bytes in dir.
func makeBase(t testing.TB, dir string, size int, seed uint64) (string, string, []byte) {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(b)
	d := hex.EncodeToString(sum[:])
	p := filepath.Join(dir, "sha256-"+d+".img")
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
	return d, p, b
}

// mountFS makes a loop-mounted filesystem of the given type in a temp dir.
func mountFS(t testing.TB, fstype string) string {
	mkfs := "mkfs." + fstype
	testenv.RequireRoot(t, "loop-mounts "+fstype)
	testenv.LookTool(t, mkfs)
	tmp := t.TempDir()
	img, mnt := filepath.Join(tmp, "fs.img"), filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o700)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 512<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", mkfs, err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "mount %s: %v\n%s", fstype, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

func storeDir(t testing.TB, backend string) string {
	switch backend {
	case "xfs", "btrfs":
		return mountFS(t, backend)
	}
	return t.TempDir()
}

func readAll(t *testing.T, v *Volume) []byte {
	b := make([]byte, v.Size())
	if _, err := v.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVolumeLifecycle(t *testing.T) {
	for _, tt := range []struct{ fs, want string }{{"ext4_cow", "cow"}, {"xfs", "reflink"}, {"btrfs", "reflink"}} {
		t.Run(tt.fs, func(t *testing.T) {
			dir := storeDir(t, tt.fs)
			digest, path, base := makeBase(t, dir, 4<<20, 1)
			other, otherPath, _ := makeBase(t, dir, 4<<20, 2)
			m, err := New(Config{Dir: dir, Bases: fakeBases{digest: path, other: otherPath}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			v, err := m.Create(ctx, "m1", digest)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if string(v.Backend) != tt.want {
				t.Fatalf("backend = %s, want %s", v.Backend, tt.want)
			}
			if _, err := m.Open("m1", digest); !errors.Is(err, ErrBusy) {
				t.Fatalf("second Open = %v, want ErrBusy", err)
			}
			if err := m.Reset(ctx, "m1"); !errors.Is(err, ErrBusy) {
				t.Fatalf("Reset while open = %v, want ErrBusy", err)
			}
			want := bytes.Clone(base)
			write := func(v *Volume, p []byte, off int64) {
				if _, err := v.WriteAtFUA(p, off); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], p)
			}
			write(v, []byte("first"), 1000)
			if err := v.Punch(8192, 8192); err != nil {
				t.Fatal(err)
			}
			copy(want[8192:], make([]byte, 8192))
			v.Close()
			if _, err := m.Open("m1", other); !errors.Is(err, ErrBaseMismatch) {
				t.Fatalf("Open against another base = %v, want ErrBaseMismatch", err)
			}
			if err := m.Snapshot("m1", "s1"); err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			snap := bytes.Clone(want)
			v, err = m.Open("m1", digest)
			if err != nil {
				t.Fatal(err)
			}
			write(v, []byte("second"), 3<<20)
			if got := readAll(t, v); !bytes.Equal(got, want) {
				t.Fatal("volume does not read back its writes")
			}
			v.Close()
			if err := m.Rollback("m1", "s1"); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			v, _ = m.Open("m1", digest)
			if got := readAll(t, v); !bytes.Equal(got, snap) {
				t.Fatal("rollback did not restore the snapshot")
			}
			v.Close()
			if err := m.Reset(ctx, "m1"); err != nil {
				t.Fatal(err)
			}
			v, _ = m.Open("m1", digest)
			if got := readAll(t, v); !bytes.Equal(got, base) {
				t.Fatal("reset volume differs from the base")
			}
			v.Close()
			if b, _ := os.ReadFile(path); !bytes.Equal(b, base) {
				t.Fatal("base changed")
			}
			if snaps, _ := m.Snapshots("m1"); len(snaps) != 1 || snaps[0] != "s1" {
				t.Fatalf("Snapshots = %v", snaps)
			}
			if !m.InUse(digest) || m.InUse(other) {
				t.Fatal("InUse wrong")
			}
			if err := m.Delete("m1"); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Open("m1", digest); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Open after Delete = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestCOWHeaderMismatch: a cow overlay whose recorded base was swapped in
// volume.json is still refused by its own header.
func TestCOWHeaderMismatch(t *testing.T) {
	dir := t.TempDir()
	digest, path, _ := makeBase(t, dir, 1<<20, 1)
	other, otherPath, _ := makeBase(t, dir, 1<<20, 2)
	m, _ := New(Config{Dir: dir, Bases: fakeBases{digest: path, other: otherPath}, NoReflink: true})
	v, err := m.Create(context.Background(), "m1", digest)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	meta, _ := m.Meta("m1")
	meta.Base = other
	writeJSONAtomic(filepath.Join(dir, "machines", "m1", "volume.json"), meta)
	if _, err := m.Open("m1", other); !errors.Is(err, ErrBaseMismatch) {
		t.Fatalf("Open = %v, want ErrBaseMismatch", err)
	}
}

func TestReflinkClonesTakeNoSpace(t *testing.T) {
	dir := mountFS(t, "xfs")
	digest, path, base := makeBase(t, dir, 64<<20, 1)
	m, _ := New(Config{Dir: dir, Bases: fakeBases{digest: path}})
	free := func() int64 {
		unix.Sync()
		var st unix.Statfs_t
		unix.Statfs(dir, &st)
		return int64(st.Bfree) * st.Bsize
	}
	before := free()
	for i := range 10 {
		v, err := m.Create(context.Background(), fmt.Sprintf("m%d", i), digest)
		if err != nil {
			t.Fatal(err)
		}
		v.WriteAt(make([]byte, 4096), 0)
		v.Close()
	}
	used := before - free()
	t.Logf("10 clones of a 64 MiB base, one 4 KiB write each: %d KiB used", used>>10)
	if used > 8<<20 {
		t.Fatalf("clones used %d bytes", used)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, base) {
		t.Fatal("writes to clones changed the base")
	}
}

func BenchmarkCloneReflink(b *testing.B) {
	dir := mountFS(b, "xfs")
	digest, path, _ := makeBase(b, dir, 64<<20, 1)
	m, _ := New(Config{Dir: dir, Bases: fakeBases{digest: path}})
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("m%d", i)
		v, err := m.Create(context.Background(), id, digest)
		if err != nil {
			b.Fatal(err)
		}
		v.Close()
		m.Delete(id)
	}
}

// Rebase keeps the old content as a snapshot on its old base; the volume
// refuses the old base until Rollback returns it there; the old base
// stays in use while the snapshot holds it.
func TestRebaseKeepsOldAsSnapshot(t *testing.T) {
	dir := t.TempDir()
	digest, path, base := makeBase(t, dir, 1<<20, 1)
	other, otherPath, otherBytes := makeBase(t, dir, 2<<20, 2)
	m, err := New(Config{Dir: dir, Bases: fakeBases{digest: path, other: otherPath}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := m.Create(ctx, "m1", digest)
	if err != nil {
		t.Fatal(err)
	}
	v.WriteAtFUA([]byte("kept"), 100)
	v.Close()
	if err := m.Rebase(ctx, "m1", other, "before-v2"); err != nil {
		t.Fatalf("Rebase: %v", err)
	}
	if _, err := m.Open("m1", digest); !errors.Is(err, ErrBaseMismatch) {
		t.Fatalf("Open(old base) after Rebase = %v, want ErrBaseMismatch", err)
	}
	v, err = m.Open("m1", other)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, v), otherBytes) {
		t.Fatal("rebased volume is not its new base")
	}
	v.Close()
	if !m.InUse(digest) || !m.InUse(other) {
		t.Fatal("InUse: want both the volume's base and its snapshot's")
	}
	info, err := m.SnapshotInfo("m1")
	if err != nil || len(info) != 1 || info[0].Name != "before-v2" || info[0].Base != digest {
		t.Fatalf("SnapshotInfo = %+v, %v; want before-v2 on the old base", info, err)
	}
	if err := m.Rollback("m1", "before-v2"); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	v, err = m.Open("m1", digest)
	if err != nil {
		t.Fatalf("Open(old base) after Rollback: %v", err)
	}
	want := bytes.Clone(base)
	copy(want[100:], "kept")
	if !bytes.Equal(readAll(t, v), want) {
		t.Fatal("rollback did not restore the old content")
	}
	v.Close()
	if err := m.DeleteSnapshot("m1", "before-v2"); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteSnapshot("m1", "before-v2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteSnapshot twice = %v, want ErrNotFound", err)
	}
	if m.InUse(other) {
		t.Fatal("other base still in use after its only snapshot went")
	}
}

// Hold refuses an open volume, and while held the volume cannot be
// opened, snapshotted or deleted; release undoes it, once.
func TestHold(t *testing.T) {
	dir := t.TempDir()
	digest, path, _ := makeBase(t, dir, 1<<20, 1)
	m, err := New(Config{Dir: dir, Bases: fakeBases{digest: path}, NoReflink: true})
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.Create(context.Background(), "m1", digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Hold("m1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Hold of an open volume = %v, want ErrBusy", err)
	}
	v.Close()
	release, err := m.Hold("m1")
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	if _, err := m.Open("m1", digest); !errors.Is(err, ErrBusy) {
		t.Errorf("Open while held = %v, want ErrBusy", err)
	}
	if err := m.Snapshot("m1", "s1"); !errors.Is(err, ErrBusy) {
		t.Errorf("Snapshot while held = %v, want ErrBusy", err)
	}
	if err := m.Delete("m1"); !errors.Is(err, ErrBusy) {
		t.Errorf("Delete while held = %v, want ErrBusy", err)
	}
	if _, err := m.Hold("../x"); !errors.Is(err, ErrBadName) {
		t.Errorf("Hold of a bad name = %v, want ErrBadName", err)
	}
	release()
	release()
	v, err = m.Open("m1", digest)
	if err != nil {
		t.Fatalf("Open after release: %v", err)
	}
	v.Close()
}
