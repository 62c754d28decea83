package sysinit

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"

	"golang.org/x/sys/unix"
)

func TestSwitchRootRefusesMissingInit(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "notexec"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, init, want string }{
		{"missing_init", "/sbin/init", "no such file"},
		{"not_executable", "/notexec", "not an executable"},
		{"directory", "/", "not an executable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := SwitchRoot(root, tt.init)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SwitchRoot(%q) = %v, want an error containing %q", tt.init, err, tt.want)
			}
		})
	}
}

// TestMountAll mounts everything under a scratch directory in a private
// mount namespace, then checks it is idempotent.
func TestMountAll(t *testing.T) {
	testenv.RequireRoot(t, "mounts pseudo filesystems")
	done := make(chan error)
	go func() {
		// This thread moves to a new mount namespace and is never given
		// back: returning with it locked makes the runtime discard it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- err
			return
		}
		root := t.TempDir()
		if err := MountAll(root); err != nil {
			done <- err
			return
		}
		for _, m := range Mounts {
			if ok, err := isMountPoint(filepath.Join(root, m.Target)); err != nil || !ok {
				t.Errorf("%s is not a mount point (err %v)", m.Target, err)
			}
		}
		done <- MountAll(root) // again: everything is mounted already
		for i := len(Mounts) - 1; i >= 0; i-- {
			unix.Unmount(filepath.Join(root, Mounts[i].Target), unix.MNT_DETACH)
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("MountAll: %v", err)
	}
}

// Distributions make /sbin/init an absolute symlink; it must be resolved
// inside the new root, not in the initramfs.
func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "lib/systemd"), 0o755)
	os.MkdirAll(filepath.Join(root, "sbin"), 0o755)
	os.WriteFile(filepath.Join(root, "lib/systemd/systemd"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("/lib/systemd/systemd", filepath.Join(root, "sbin/init"))
	os.Symlink("../lib/systemd/systemd", filepath.Join(root, "sbin/rel"))
	os.Symlink("/sbin/loop", filepath.Join(root, "sbin/loop"))
	want := filepath.Join(root, "lib/systemd/systemd")
	for _, p := range []string{"/sbin/init", "/sbin/rel", "/lib/systemd/systemd"} {
		if got, err := resolveInRoot(root, p); err != nil || got != want {
			t.Errorf("resolveInRoot(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	if _, err := resolveInRoot(root, "/sbin/loop"); err == nil {
		t.Error("resolveInRoot followed a symlink loop forever")
	}
}
