package bootnext

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// makeMutable clears the immutable flag efivarfs sets on path, if it
// exists; file systems without the flag (a test's temp dir) are fine.
func makeMutable(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsImmutable == 0 {
		return nil // no flags here (not efivarfs), or not immutable
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags&^fsImmutable); err != nil {
		return &os.PathError{Op: "clear immutable", Path: path, Err: err}
	}
	return nil
}

// fsImmutable is FS_IMMUTABLE_FL of linux/fs.h.
const fsImmutable = 0x10
