package nfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrBaseChanged means an overlay's upper directory was made on another
// lower (base) than the one it is mounted on now. The kernel refuses with
// ESTALE (index=on): the machine's changes belong to the old base.
var ErrBaseChanged = errors.New("overlay upper belongs to another base")

// MountOverlay mounts an overlayfs at target with lower as its read-only
// base and upper and work as the machine's writable directories (on one
// filesystem), exportable over NFS: index=on,nfs_export=on. Paths must be
// absolute and free of ',', ':' and '\'. A lower other than the one upper
// was made on gives an error wrapping both ErrBaseChanged and ESTALE.
func MountOverlay(lower, upper, work, target string) error {
	for _, p := range []string{lower, upper, work, target} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, ",:\\\x00\n") {
			return fmt.Errorf("mount overlay: %w: path %q", ErrBadConfig, p)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",index=on,nfs_export=on"
	err := unix.Mount("overlay", target, "overlay", 0, opts)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ESTALE):
		return fmt.Errorf("mount overlay %s: upper %s was made on another base than lower %s: %w (%w)",
			target, upper, lower, ErrBaseChanged, err)
	default:
		return fmt.Errorf("mount overlay %s (lower %s, upper %s): %w", target, lower, upper,
			&os.PathError{Op: "mount", Path: target, Err: err})
	}
}

// Unmount unmounts the overlay at target. It fails with EBUSY while files
// on it are open; stop exporting it first.
func Unmount(target string) error {
	if err := unix.Unmount(target, 0); err != nil {
		return &os.PathError{Op: "umount", Path: target, Err: err}
	}
	return nil
}

// BindReadOnly mounts dir at target again, read-only: a volatile
// machine's view of a shared base tree.
func BindReadOnly(dir, target string) error {
	if err := unix.Mount(dir, target, "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "bind mount " + dir, Path: target, Err: err}
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		unix.Unmount(target, unix.MNT_DETACH)
		return &os.PathError{Op: "remount read-only", Path: target, Err: err}
	}
	return nil
}

// Mounted reports whether target is a mount point in this mount
// namespace.
func Mounted(target string) (bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		// ID parent major:minor root mountpoint options ...
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountinfo(f[4]) == target {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountMerged mounts a read-only overlayfs at target that shows upper (a
// machine's upper: whiteouts and opaque directories taken into account)
// over lower, as the machine saw its root. upper is not written.
func MountMerged(upper, lower, target string) error {
	for _, p := range []string{upper, lower, target} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, ",:\\\x00\n") {
			return fmt.Errorf("mount merged overlay: %w: path %q", ErrBadConfig, p)
		}
	}
	opts := "lowerdir=" + upper + ":" + lower
	if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, opts); err != nil {
		return fmt.Errorf("mount merged overlay (upper %s over %s): %w", upper, lower,
			&os.PathError{Op: "mount", Path: target, Err: err})
	}
	return nil
}
