package backup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// treeRestorer restores roots and bases (rootData, baseData) as they
// were: types, modes, owners, times and extended attributes. Directory
// modes and times are set last, so that a read-only directory still takes
// its entries.
type treeRestorer struct {
	root *os.Root
	dirs []*tar.Header
}

func (tr *treeRestorer) restore(h *tar.Header, r io.Reader) error {
	name := strings.TrimSuffix(h.Name, "/")
	if d := path.Dir(name); d != "." {
		if err := tr.root.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	mode := os.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		if err := tr.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		tr.dirs = append(tr.dirs, h)
	case tar.TypeReg:
		f, err := tr.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		err = restoreData(f, h, r)
		if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := tr.root.Symlink(h.Linkname, name); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if (h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock) && !treeDev(h.Name, h) {
			return fmt.Errorf("device node outside an image's dev/ (only whiteouts, 0:0, are kept in roots)")
		}
		if err := tr.mknod(name, h); err != nil {
			return err
		}
	default:
		return fmt.Errorf("entry type %q is not restored", h.Typeflag)
	}
	if err := tr.attrs(name, h); err != nil {
		return err
	}
	if h.Typeflag == tar.TypeDir || h.Typeflag == tar.TypeSymlink {
		return nil
	}
	if err := tr.root.Chmod(name, mode|specialBits(h.Mode)); err != nil {
		return err
	}
	return tr.root.Chtimes(name, h.ModTime, h.ModTime)
}

// mknod makes a device node or fifo: in the directory opened through
// the root, so that no symlink leads it outside.
func (tr *treeRestorer) mknod(name string, h *tar.Header) error {
	dir, err := tr.root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	typ := uint32(unix.S_IFCHR)
	switch h.Typeflag {
	case tar.TypeBlock:
		typ = unix.S_IFBLK
	case tar.TypeFifo:
		typ = unix.S_IFIFO
	}
	dev := unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
	if err := unix.Mknodat(int(dir.Fd()), path.Base(name), typ|0o600, int(dev)); err != nil {
		return &os.PathError{Op: "mknod", Path: name, Err: err}
	}
	return nil
}

// overlayOrigin is overlayfs's record, in an upper, of the lower inode a
// directory or file was copied up from: a file handle of the lower's
// filesystem, which names nothing once the base is restored (new
// inodes). Kept, it makes the kernel refuse the restored upper over the
// restored base as made on another base (ESTALE, index=on); a restore
// leaves it out and the kernel records the new base at the first mount.
const overlayOrigin = "trusted.overlay.origin"

// attrs sets the owner and the extended attributes of name (not
// following a symlink). Without privileges (not root) owners and
// trusted.* attributes cannot be set: that fails the restore.
func (tr *treeRestorer) attrs(name string, h *tar.Header) error {
	if err := tr.root.Lchown(name, h.Uid, h.Gid); err != nil && os.Geteuid() == 0 {
		return err
	}
	var xattrs []string
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") && k != "SCHILY.xattr."+overlayOrigin {
			xattrs = append(xattrs, k)
		}
	}
	if len(xattrs) == 0 {
		return nil
	}
	dir, err := tr.root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	// The directory's descriptor, resolved inside the root, and the
	// final name: Lsetxattr does not follow it.
	p := "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + path.Base(name)
	for _, k := range xattrs {
		attr := strings.TrimPrefix(k, "SCHILY.xattr.")
		if err := unix.Lsetxattr(p, attr, []byte(h.PAXRecords[k]), 0); err != nil {
			return &os.PathError{Op: "setxattr " + attr, Path: name, Err: err}
		}
	}
	return nil
}

// finish sets the directories' modes and times, deepest first.
func (tr *treeRestorer) finish() error {
	for i := len(tr.dirs) - 1; i >= 0; i-- {
		h := tr.dirs[i]
		name := strings.TrimSuffix(h.Name, "/")
		if err := tr.root.Chmod(name, os.FileMode(h.Mode).Perm()|specialBits(h.Mode)); err != nil {
			return fmt.Errorf("restore %s: %w", name, err)
		}
		if err := tr.root.Chtimes(name, time.Time{}, h.ModTime); err != nil {
			return fmt.Errorf("restore %s: %w", name, err)
		}
	}
	return nil
}

// specialBits maps tar's setuid, setgid and sticky bits to os.FileMode.
func specialBits(mode int64) os.FileMode {
	var m os.FileMode
	if mode&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}
