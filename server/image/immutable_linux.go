package image

import (
	"os"

	"golang.org/x/sys/unix"
)

// setImmutable sets or clears FS_IMMUTABLE_FL. Filesystems without
// attribute support (ENOTTY, EOPNOTSUPP) and missing privileges (EPERM)
// are ignored: mode 0444 remains.
func setImmutable(path string, on bool) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
}

const fsImmutableFL = 0x00000010 // FS_IMMUTABLE_FL, linux/fs.h
