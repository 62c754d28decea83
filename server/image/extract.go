package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// extractor writes source entries into a directory. Every name must be
// local (no absolute path, no ".."), may not pass through a symlink
// extracted before, and device nodes may only appear under dev/. os.Root
// confines every operation to the directory as a second line.
type extractor struct {
	dir      string
	root     *os.Root
	symlinks map[string]bool
	dirs     []entry // times and modes applied last, deepest first
	chownErr error   // first ownership failure (not root): logged once
	bytes    int64   // regular file bytes
	entries  int64
	// layered: entries are layers applied in order (OCI), so an entry
	// replaces whatever its name holds, a directory with all it holds.
	layered bool
}

// implyParents records the directories MkdirAll is about to create for
// dir (an OCI layer need not list them) with mode 0755 and time zero, so
// that the tree does not depend on when it was unpacked. An entry of the
// directory later in the source overrides them.
func (x *extractor) implyParents(dir string) {
	for d := dir; d != "." && d != "/"; d = path.Dir(d) {
		if _, err := x.root.Lstat(d); err == nil {
			return
		}
		x.dirs = append(x.dirs, entry{name: d, typ: typeDir, perm: 0o755})
	}
}

// replace makes room for an entry of type typ at name: a non-directory
// replaces a file; in layered mode anything but a directory over a
// directory replaces whatever is there.
func (x *extractor) replace(name string, typ entryType) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if typ == typeDir && fi.IsDir() {
		return nil
	}
	if !x.layered {
		if typ == typeDir {
			return nil // Mkdir reports the conflict
		}
		return x.root.Remove(name)
	}
	return x.removeAll(name)
}

// removeAll removes name and everything under it from the tree and from
// what finish and checkParents remember.
func (x *extractor) removeAll(name string) error {
	if err := x.root.RemoveAll(name); err != nil {
		return err
	}
	under := func(n string) bool { return n == name || strings.HasPrefix(n, name+"/") }
	for n := range x.symlinks {
		if under(n) {
			delete(x.symlinks, n)
		}
	}
	x.dirs = slices.DeleteFunc(x.dirs, func(d entry) bool { return under(d.name) })
	return nil
}

func (x *extractor) add(e entry) error {
	name, err := localName(e.name)
	if err != nil {
		return err
	}
	e.name = name
	if err := x.checkParents(name); err != nil {
		return err
	}
	x.entries++
	if name == "." {
		if e.typ != typeDir {
			return fmt.Errorf("image: %q is the root but not a directory: %w", e.name, ErrUnsafePath)
		}
		x.dirs = append(x.dirs, e)
		return nil
	}
	if dir := path.Dir(name); dir != "." {
		x.implyParents(dir)
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("image: extract %s: %w", name, err)
		}
	}
	if err := x.replace(name, e.typ); err != nil {
		return fmt.Errorf("image: extract %s: %w", name, err)
	}
	if err := x.create(e); err != nil {
		return fmt.Errorf("image: extract %s: %w", name, err)
	}
	if e.typ == typeDir {
		x.dirs = append(x.dirs, e)
		return nil
	}
	if e.typ == typeHardlink {
		return nil // shares the target's inode and attributes
	}
	return x.setAttrs(e)
}

func (x *extractor) create(e entry) error {
	full := filepath.Join(x.dir, filepath.FromSlash(e.name))
	switch e.typ {
	case typeDir:
		if err := x.root.Mkdir(e.name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return nil
	case typeReg:
		f, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, e.body)
		x.bytes += n
		return errors.Join(err, f.Close())
	case typeSymlink:
		x.symlinks[e.name] = true
		return x.root.Symlink(e.link, e.name)
	case typeHardlink:
		target, err := localName(e.link)
		if err != nil {
			return err
		}
		if err := x.checkParents(target); err != nil {
			return err
		}
		if x.symlinks[target] {
			return fmt.Errorf("hard link to symlink %q: %w", target, ErrUnsafePath)
		}
		return x.root.Link(target, e.name)
	case typeChar, typeBlock:
		if !strings.HasPrefix(e.name, "dev/") {
			return fmt.Errorf("device node outside dev/: %w", ErrUnsafePath)
		}
		mode := uint32(unix.S_IFCHR)
		if e.typ == typeBlock {
			mode = unix.S_IFBLK
		}
		return mknod(full, mode|0o600, int(unix.Mkdev(e.major, e.minor)))
	case typeFIFO:
		return mknod(full, unix.S_IFIFO|0o600, 0)
	}
	return fmt.Errorf("entry type %d: %w", e.typ, ErrUnsafePath)
}

func mknod(path string, mode uint32, dev int) error {
	if err := unix.Mknod(path, mode, dev); err != nil {
		return &os.PathError{Op: "mknod", Path: path, Err: err}
	}
	return nil
}

// setAttrs applies ownership, then mode (chown clears setuid), then times
// in whole seconds with atime = mtime, so that the tree is the same
// whatever the source (tar formats differ in time precision).
func (x *extractor) setAttrs(e entry) error {
	if err := x.root.Lchown(e.name, e.uid, e.gid); err != nil && x.chownErr == nil {
		x.chownErr = err
	}
	full := filepath.Join(x.dir, filepath.FromSlash(e.name))
	if e.typ != typeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, full, e.perm, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: full, Err: err}
		}
	}
	mtime := e.mtime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	ts := unix.Timespec{Sec: mtime.Unix()}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, full, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: full, Err: err}
	}
	return nil
}

// finish applies directory attributes, deepest first.
func (x *extractor) finish() error {
	sort.SliceStable(x.dirs, func(i, j int) bool {
		return strings.Count(x.dirs[i].name, "/") > strings.Count(x.dirs[j].name, "/")
	})
	for _, d := range x.dirs {
		if d.name == "." {
			continue
		}
		if err := x.setAttrs(d); err != nil {
			return err
		}
	}
	// The root directory last: its owner is root:root in the image anyway.
	root := entry{name: ".", typ: typeDir, perm: 0o755}
	for _, d := range x.dirs {
		if d.name == "." {
			root = d
		}
	}
	return x.setAttrs(root)
}

// localName cleans a source name and refuses absolute and escaping ones.
func localName(name string) (string, error) {
	n := strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")
	if n == "" || n == "." {
		return ".", nil
	}
	// A backslash is an ordinary byte in a Linux file name (systemd escapes
	// '-' in unit names as \x2d); IsLocal covers escapes.
	if strings.HasPrefix(n, "/") || !filepath.IsLocal(n) {
		return "", fmt.Errorf("image: entry %q: %w", name, ErrUnsafePath)
	}
	return path.Clean(n), nil
}

// checkParents refuses a name that would pass through an extracted
// symlink.
func (x *extractor) checkParents(name string) error {
	for p := path.Dir(name); p != "." && p != "/"; p = path.Dir(p) {
		if x.symlinks[p] {
			return fmt.Errorf("image: entry %q passes through symlink %q: %w", name, p, ErrUnsafePath)
		}
	}
	return nil
}
