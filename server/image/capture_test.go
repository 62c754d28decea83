package image

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// copyBase returns a writable copy of the base of im.
func copyBase(t *testing.T, s *Store, im *Image) string {
	t.Helper()
	p, err := s.BasePath(im.Digest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

func capture(t *testing.T, s *Store, name, disk string) (*Image, error) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	return s.Capture(context.Background(), name, f, fi.Size())
}

func debugfsWrite(t *testing.T, img, script string) {
	t.Helper()
	if out, err := exec.Command("debugfs", "-w", "-R", script, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs %s: %v: %s", script, err, out)
	}
}

// plainTree is a tree without hard links or symlinks, which a capture
// keeps exactly (see Capture).
func plainTree(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "src")
	for name, body := range map[string]string{"etc/hostname": "node\n", "usr/bin/tool": "#!/bin/sh\n", "var/empty/.keep": ""} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.Lchown(filepath.Join(dir, "etc/hostname"), 1000, 1000)
	return dir
}

func TestCaptureUnchangedIsTheSameImage(t *testing.T) {
	s := newStore(t)
	im, err := s.Import(context.Background(), "base", plainTree(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := capture(t, s, "again", copyBase(t, s, im))
	if err != nil {
		t.Fatalf("Capture: %v", err)
	}
	if got.TreeDigest != im.TreeDigest || got.Digest != im.Digest {
		t.Errorf("capture of an unchanged base: tree %s image %s, want tree %s image %s", got.TreeDigest, got.Digest, im.TreeDigest, im.Digest)
	}
	if _, err := s.Get("again"); err != nil {
		t.Errorf("captured image not named: %v", err)
	}
}

func TestCaptureSeesChanges(t *testing.T) {
	s := newStore(t)
	im, err := s.Import(context.Background(), "base", makeTree(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	disk := copyBase(t, s, im)
	debugfsWrite(t, disk, "rm etc/hostname")
	got, err := capture(t, s, "changed", disk)
	if err != nil {
		t.Fatalf("Capture: %v", err)
	}
	if got.Digest == im.Digest {
		t.Fatal("captured image equals its base after a change")
	}
	tree, _ := s.TreePath(got.Digest)
	if _, err := os.Lstat(filepath.Join(tree, "etc", "hostname")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed file in the captured tree: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(tree, "bin", "init")); err != nil || string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("bin/init in the captured tree: %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(tree, "hostlink")); err != nil || l != "/etc/hostname" {
		t.Errorf("symlink in the captured tree: %q, %v", l, err)
	}
}

func TestCaptureRefusesUnclean(t *testing.T) {
	s := newStore(t)
	im, err := s.Import(context.Background(), "base", makeTree(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, script := range map[string]string{
		"journal": "feature needs_recovery",
		"inode":   "clri bin/init",
	} {
		t.Run(name, func(t *testing.T) {
			disk := copyBase(t, s, im)
			debugfsWrite(t, disk, script)
			_, err := capture(t, s, "bad-"+name, disk)
			if !errors.Is(err, ErrUnclean) {
				t.Fatalf("Capture of a damaged filesystem: %v, want ErrUnclean", err)
			}
			if _, err := s.Get("bad-" + name); !errors.Is(err, ErrNotFound) {
				t.Errorf("refused capture named an image: %v", err)
			}
		})
	}
	t.Run("not ext4", func(t *testing.T) {
		disk := filepath.Join(t.TempDir(), "zero.img")
		os.WriteFile(disk, make([]byte, 1<<20), 0o600)
		if _, err := capture(t, s, "zero", disk); !errors.Is(err, ErrUnclean) {
			t.Fatalf("Capture of zeros: %v, want ErrUnclean", err)
		}
	})
	if _, err := capture(t, s, "../x", copyBase(t, s, im)); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name: %v", err)
	}
}
