package nfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/test/netnstest"
)

// overlayDirs makes lower (with a file), upper, work and a mount point in
// a fresh directory.
func overlayDirs(t *testing.T, root, lowerName string) (lower, upper, work, target string) {
	t.Helper()
	lower = filepath.Join(root, lowerName)
	upper, work, target = filepath.Join(root, "upper"), filepath.Join(root, "work"), filepath.Join(root, "mnt")
	for _, d := range []string{lower, upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "base.txt"), []byte("base "+lowerName), 0o444); err != nil {
		t.Fatal(err)
	}
	return lower, upper, work, target
}

func mountForTest(t *testing.T, lower, upper, work, target string) error {
	t.Helper()
	err := MountOverlay(lower, upper, work, target)
	if err == nil {
		t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	}
	return err
}

func TestMountOverlay(t *testing.T) {
	netnstest.RequireRoot(t)
	root := t.TempDir()
	lower, upper, work, target := overlayDirs(t, root, "lower1")
	if err := mountForTest(t, lower, upper, work, target); err != nil {
		t.Fatalf("MountOverlay = %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "base.txt")); err != nil || string(got) != "base lower1" {
		t.Fatalf("read through overlay = %q, %v; want the lower's file", got, err)
	}
	if err := os.WriteFile(filepath.Join(target, "mine.txt"), []byte("machine data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(target); err != nil {
		t.Fatalf("Unmount = %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(upper, "mine.txt")); err != nil || string(got) != "machine data" {
		t.Fatalf("upper/mine.txt = %q, %v; want the write", got, err)
	}
	if _, err := os.Stat(filepath.Join(lower, "mine.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lower/mine.txt: %v; want the base untouched", err)
	}

	t.Run("same_base_remounts", func(t *testing.T) {
		if err := mountForTest(t, lower, upper, work, target); err != nil {
			t.Fatalf("MountOverlay again = %v", err)
		}
		if got, err := os.ReadFile(filepath.Join(target, "mine.txt")); err != nil || string(got) != "machine data" {
			t.Fatalf("mine.txt after remount = %q, %v", got, err)
		}
		if err := Unmount(target); err != nil {
			t.Fatalf("Unmount = %v", err)
		}
	})
	t.Run("changed_base_refused", func(t *testing.T) {
		other, _, _, _ := overlayDirs(t, root, "lower2")
		err := mountForTest(t, other, upper, work, target)
		if !errors.Is(err, ErrBaseChanged) || !errors.Is(err, unix.ESTALE) {
			t.Fatalf("MountOverlay(other lower) = %v; want ErrBaseChanged (ESTALE)", err)
		}
	})
}

func TestMountOverlayBadPath(t *testing.T) {
	for _, tc := range []struct{ name, lower string }{
		{"relative", "lower"},
		{"comma_injects_option", "/a,index=off"},
		{"colon_adds_lower", "/a:/b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := MountOverlay(tc.lower, "/u", "/w", "/t"); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("MountOverlay(%q) = %v; want ErrBadConfig", tc.lower, err)
			}
		})
	}
}
