// Package sysinit does what an init process must do before and after the
// agent's work: mount the pseudo file systems, attach the console, hand over
// to the real init with switch_root, or power off or reboot.
//
// Everything here needs to run as PID 1 in the initramfs (or at least as
// root in a scratch mount namespace); the functions are thin wrappers over
// system calls and return *os.PathError or *os.SyscallError values.
package sysinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"
)

// A Mount is one pseudo file system the agent needs.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

// Mounts are the file systems MountAll mounts, in order.
var Mounts = []Mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"securityfs", "/sys/kernel/security", "securityfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// MountAll mounts Mounts under root ("/" in the initramfs), skipping those
// already mounted, and returns every failure joined.
func MountAll(root string) error {
	var errs []error
	for _, m := range Mounts {
		m.Target = filepath.Join(root, m.Target)
		if err := mountOnce(m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func mountOnce(m Mount) error {
	if err := os.MkdirAll(m.Target, 0o755); err != nil {
		return err
	}
	if mounted, err := isMountPoint(m.Target); err != nil || mounted {
		return err
	}
	if err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data); err != nil {
		return &os.PathError{Op: "mount " + m.FSType, Path: m.Target, Err: err}
	}
	return nil
}

// isMountPoint reports whether path is on another file system than its
// parent.
func isMountPoint(path string) (bool, error) {
	same, err := mount.SameFilesystem(path, filepath.Dir(path))
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	return !same, nil
}

// Console makes /dev/console the standard input, output and error of the
// process. The kernel starts /init with the console already open, unless
// the initramfs lacked /dev/console when it started; after devtmpfs is
// mounted the node exists.
func Console() error {
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for fd := range 3 {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			return os.NewSyscallError("dup3", err)
		}
	}
	return nil
}

// SwitchRoot moves /dev, /proc, /sys and /run into newRoot, makes it the
// root, deletes the initramfs contents and executes init (a path inside
// newRoot) as PID 1 with no arguments and an empty environment. It returns
// only on failure. It checks that init exists and is executable first,
// because after the move there is no way back.
func SwitchRoot(newRoot, init string) error {
	target, err := resolveInRoot(newRoot, init)
	if err != nil {
		return fmt.Errorf("switch_root: init: %w", err)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("switch_root: init: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("switch_root: init %s is not an executable file", target)
	}
	unix.Sync()
	return mount.SwitchRoot(newRoot, init)
}

// resolveInRoot resolves p inside root as the new root will see it:
// absolute symlinks (Debian's /sbin/init -> /lib/systemd/systemd) are
// relative to root, not to the initramfs.
func resolveInRoot(root, p string) (string, error) {
	for hops := 0; hops < 40; hops++ {
		full := filepath.Join(root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return full, nil
		}
		link, err := os.Readlink(full)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(link) {
			p = link
		} else {
			p = filepath.Join(filepath.Dir(p), link)
		}
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", p)
}

// PowerOff syncs and powers the machine off. It returns only on failure.
func PowerOff() error {
	unix.Sync()
	return os.NewSyscallError("reboot", unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF))
}

// Reboot syncs and restarts the machine. It returns only on failure.
func Reboot() error {
	unix.Sync()
	return os.NewSyscallError("reboot", unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART))
}
