package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/u-root/mkuimage/cpio"
)

// baseDirs are created in every initramfs (mode 0755 unless listed in
// baseDirModes).
var baseDirs = []string{"bin", "dev", "etc", "etc/sealroot", "proc", "run", "sbin", "sys", "tmp"}

var baseDirModes = map[string]uint64{"tmp": 0o1777}

// node is one file, directory or device of the archive.
type node struct {
	mode           uint64 // type and permission bits
	rmajor, rminor uint64 // device numbers
	data           string // content, unless src is set
	src            string // local file read when the archive is written
}

// tree collects nodes by archive path ("." is the root).
type tree struct {
	nodes map[string]node
}

// newTree returns the base layout: root 0755, standard directories and the
// console and null devices (without dev/console the kernel starts /init
// without stdin/stdout/stderr).
func newTree() *tree {
	t := &tree{nodes: map[string]node{".": {mode: cpio.S_IFDIR | 0o755}}}
	for _, d := range baseDirs {
		mode, ok := baseDirModes[d]
		if !ok {
			mode = 0o755
		}
		t.addDir(d, mode)
	}
	t.nodes["dev/console"] = node{mode: cpio.S_IFCHR | 0o600, rmajor: 5, rminor: 1}
	t.nodes["dev/null"] = node{mode: cpio.S_IFCHR | 0o666, rmajor: 1, rminor: 3}
	return t
}

// addDir adds directory p and its missing parents.
func (t *tree) addDir(p string, perm uint64) {
	for p != "." && p != "/" {
		if _, ok := t.nodes[p]; ok {
			return
		}
		t.nodes[p] = node{mode: cpio.S_IFDIR | perm}
		p, perm = path.Dir(p), 0o755
	}
}

// addFile adds a regular file with content data, or read from src if set,
// and its missing parent directories.
func (t *tree) addFile(p string, perm uint64, data, src string) {
	t.addDir(path.Dir(p), 0o755)
	t.nodes[p] = node{mode: cpio.S_IFREG | perm, data: data, src: src}
}

// writeCPIO writes the newc archive: records sorted by path (parents sort
// before children), inode numbers by position, uid/gid/mtime 0, trailer.
func (t *tree) writeCPIO(ctx context.Context, w io.Writer) error {
	names := make([]string, 0, len(t.nodes))
	for p := range t.nodes {
		names = append(names, p)
	}
	sort.Strings(names)
	rw := cpio.Newc.Writer(w)
	for i, p := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := t.record(p, uint64(i+1))
		if err != nil {
			return err
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("cpio %s: %w", p, err)
		}
	}
	return cpio.WriteTrailer(rw)
}

// record returns the cpio record for path p.
func (t *tree) record(p string, ino uint64) (cpio.Record, error) {
	n := t.nodes[p]
	info := cpio.Info{Name: p, Ino: ino, Mode: n.mode, NLink: 1, Rmajor: n.rmajor, Rminor: n.rminor}
	if n.mode&cpio.S_IFMT == cpio.S_IFDIR {
		info.NLink = 2
	}
	if n.mode&cpio.S_IFMT != cpio.S_IFREG {
		return cpio.Record{Info: info}, nil
	}
	data := []byte(n.data)
	if n.src != "" {
		var err error
		if data, err = os.ReadFile(n.src); err != nil {
			return cpio.Record{}, err
		}
	}
	info.FileSize = uint64(len(data))
	return cpio.Record{ReaderAt: bytes.NewReader(data), Info: info}, nil
}

// joinLocal joins a slash-separated relative path to a local directory.
func joinLocal(dir, rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
