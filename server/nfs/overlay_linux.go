package nfs

import (
	"errors"
	"fmt"
	"os"
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
