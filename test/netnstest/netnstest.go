// Package netnstest creates self-cleaning network namespaces for tests.
//
// A namespace made by [New] is named and bind-mounted under /run/netns like
// `ip netns add`, so tools can reach it by name. Its loopback is up and it
// has no other links: traffic never leaves it unless a test adds a veth to
// another namespace it owns. The namespace, and every link in it, is removed
// in t.Cleanup, also when the test fails or panics. A stale namespace with
// the same name, left behind by a crashed run, is removed first.
//
// Tests using this package need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); [New]
// skips the test otherwise, except when CI=true, where it fails.
package netnstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// runDir is where `ip netns` keeps named namespaces.
const runDir = "/run/netns"

// NS is a named network namespace owned by one test.
// Its methods are safe for concurrent use.
type NS struct {
	// Name is the namespace's name, as `ip netns list` shows it.
	Name string
	// Path is the bind mount of the namespace, for setns(2) or
	// `nsenter --net=Path`.
	Path string
}

// New creates the network namespace name, removing a stale one of the same
// name first, and deletes it in t.Cleanup.
func New(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	n := &NS{Name: name, Path: filepath.Join(runDir, name)}
	if err := shareRunDir(); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if err := removeStale(name); err != nil {
		t.Fatalf("netnstest: removing stale namespace %q: %v", name, err)
	}
	if err := create(name); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("netnstest: deleting namespace %q: %v", name, err)
		}
	})
	if err := n.Do(upLoopback); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	return n
}

// RequireRoot skips t unless the process runs as root; under CI=true it
// fails t instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "network namespaces")
}

// shareRunDir makes runDir a shared mount point, as `ip netns add` does
// before its first namespace. Without it, a later `ip netns add` by anyone
// else binds runDir over itself and hides the namespaces mounted here.
func shareRunDir() error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(runDir, runDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return &os.PathError{Op: "bind mount", Path: runDir, Err: err}
		}
		err = unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return &os.PathError{Op: "make shared", Path: runDir, Err: err}
	}
	return nil
}

// removeStale unmounts and removes runDir/name if present; a plain file left
// by a half-finished `ip netns add` is removed too.
func removeStale(name string) error {
	p := filepath.Join(runDir, name)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return &os.PathError{Op: "umount", Path: p, Err: err}
	}
	return os.Remove(p)
}

// create makes the named namespace on a locked thread and moves the thread
// back; a thread that cannot move back is never reused.
func create(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netns.Get: %w", err)
			return // the thread is discarded: it stays locked
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if err != nil {
			errc <- fmt.Errorf("netns.NewNamed(%q): %w", name, err)
			return
		}
		h.Close()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("netns.Set(original): %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// Do runs fn on an OS thread that has joined the namespace and returns its
// error. The calling goroutine's thread is not affected. Processes started
// by fn with os/exec run in the namespace too, but die with that thread's
// owner if they use Pdeathsig: prefer [NS.Command] for long-lived processes.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netns.Get: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(n.Path)
		if err != nil {
			errc <- fmt.Errorf("netns.GetFromPath(%q): %w", n.Path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("netns.Set(%s): %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns.Set(original): %w", err))
			return // the thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Command returns a command that runs name in the namespace via
// `nsenter --net`, which keeps the caller's mount namespace (unlike
// `ip netns exec`).
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"--net=" + n.Path, "--", name}, args...)
	return exec.CommandContext(ctx, "nsenter", argv...)
}

func upLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("netlink.LinkByName(lo): %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("netlink.LinkSetUp(lo): %w", err)
	}
	return nil
}
