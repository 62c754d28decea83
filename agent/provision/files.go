package provision

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/wire"
)

// resolve keeps every lookup inside the new root: absolute symlinks and
// ".." resolve as they will after switch_root, /proc magic links not at all.
const resolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// WriteFiles writes files into the root at root, in order, after checking
// them all (wire.CheckFiles). Each file replaces what is at its path
// atomically (a symlink there is replaced, not followed) and gets its mode
// and owner; missing parent directories are created 0755, owned by root.
func WriteFiles(root string, files []wire.File) error {
	if len(files) == 0 {
		return nil
	}
	if err := wire.CheckFiles(files); err != nil {
		return fmt.Errorf("write files: %w", err)
	}
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("write files: %w", &os.PathError{Op: "open", Path: root, Err: err})
	}
	defer unix.Close(rootFD)
	for i := range files {
		if err := writeFile(rootFD, &files[i]); err != nil {
			return fmt.Errorf("write file %s: %w", files[i].Path, err)
		}
	}
	return nil
}

func writeFile(rootFD int, f *wire.File) error {
	dirFD, err := makeDirs(rootFD, path.Dir(f.Path))
	if err != nil {
		return err
	}
	defer unix.Close(dirFD)
	base := path.Base(f.Path)
	const tmp = ".sealroot-file.tmp"
	if err := unix.Unlinkat(dirFD, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "unlink", Path: tmp, Err: err}
	}
	fd, err := unix.Openat(dirFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	file := os.NewFile(uintptr(fd), tmp)
	_, werr := file.Write(f.Content)
	// chown before chmod: chown clears the set-user-ID bit.
	err = errors.Join(werr, file.Chown(int(f.UID), int(f.GID)), file.Chmod(os.FileMode(f.Mode&0o777)|modeBits(f.Mode)), file.Sync(), file.Close())
	if err == nil {
		if rerr := unix.Renameat(dirFD, tmp, dirFD, base); rerr != nil {
			err = &os.PathError{Op: "rename", Path: base, Err: rerr}
		}
	}
	if err != nil {
		unix.Unlinkat(dirFD, tmp, 0)
		return err
	}
	return nil
}

// modeBits maps the set-user-ID, set-group-ID and sticky bits of a Unix
// mode to os.FileMode.
func modeBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

// makeDirs opens dir (absolute, clean) inside the root, creating missing
// components 0755 owned by root, and returns its descriptor.
func makeDirs(rootFD int, dir string) (int, error) {
	cur := "/"
	fd, err := openat2(rootFD, cur)
	if err != nil {
		return -1, err
	}
	for _, el := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		if el == "" {
			continue
		}
		next := path.Join(cur, el)
		nfd, err := openat2(rootFD, next)
		if errors.Is(err, unix.ENOENT) {
			if merr := unix.Mkdirat(fd, el, 0o755); merr != nil && !errors.Is(merr, unix.EEXIST) {
				unix.Close(fd)
				return -1, &os.PathError{Op: "mkdir", Path: next, Err: merr}
			}
			if cerr := unix.Fchownat(fd, el, 0, 0, unix.AT_SYMLINK_NOFOLLOW); cerr != nil {
				unix.Close(fd)
				return -1, &os.PathError{Op: "chown", Path: next, Err: cerr}
			}
			nfd, err = openat2(rootFD, next)
		}
		unix.Close(fd)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: next, Err: err}
		}
		fd, cur = nfd, next
	}
	return fd, nil
}

func openat2(rootFD int, p string) (int, error) {
	return unix.Openat2(rootFD, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolve,
	})
}

// openInRoot opens p for reading, resolved inside root.
func openInRoot(root, p string, flags int) (*os.File, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(rootFD)
	fd, err := unix.Openat2(rootFD, p, &unix.OpenHow{Flags: uint64(flags) | unix.O_CLOEXEC, Resolve: resolve})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}
