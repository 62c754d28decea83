package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// entryType is the kind of a tree entry.
type entryType byte

const (
	typeDir entryType = iota
	typeReg
	typeSymlink
	typeHardlink
	typeChar
	typeBlock
	typeFIFO
)

// entry is one file of a source, from a tar header or a directory walk.
type entry struct {
	name     string // relative, slash separated
	typ      entryType
	perm     uint32 // permission bits with setuid, setgid, sticky
	uid, gid int
	mtime    time.Time
	link     string // symlink target, or hard link target (a tree path)
	major    uint32
	minor    uint32
	body     io.Reader // typeReg
}

// walkSource calls fn for every entry of source, a directory or a tar
// archive (optionally gzip-compressed), and reports progress in bytes of
// source read against total.
func walkSource(source string, progress func(done, total int64), fn func(entry) error) error {
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("image: source: %w", err)
	}
	if fi.IsDir() {
		return walkDir(source, progress, fn)
	}
	f, err := os.Open(source)
	if err != nil {
		return fmt.Errorf("image: source: %w", err)
	}
	defer f.Close()
	cr := &countingReader{r: f, total: fi.Size(), progress: progress}
	return walkTar(cr, fn)
}

type countingReader struct {
	r        io.Reader
	done     int64
	total    int64
	progress func(done, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	c.progress(c.done, c.total)
	return n, err
}

func walkTar(r io.Reader, fn func(entry) error) error {
	br := bufio.NewReader(r)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("image: gzip: %w", err)
		}
		defer gz.Close()
		in = gz
	}
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("image: tar: %w", err)
		}
		e, ok := headerEntry(h, tr)
		if !ok {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// headerEntry is the entry of a tar header; false for kinds an image
// does not hold (PAX/GNU meta headers are consumed by archive/tar).
func headerEntry(h *tar.Header, body io.Reader) (entry, bool) {
	e := entry{name: h.Name, perm: uint32(h.Mode) & 0o7777, uid: h.Uid, gid: h.Gid,
		mtime: h.ModTime, link: h.Linkname, major: uint32(h.Devmajor), minor: uint32(h.Devminor), body: body}
	switch h.Typeflag {
	case tar.TypeDir:
		e.typ = typeDir
	case tar.TypeReg, tar.TypeRegA:
		e.typ = typeReg
	case tar.TypeSymlink:
		e.typ = typeSymlink
	case tar.TypeLink:
		e.typ = typeHardlink
	case tar.TypeChar:
		e.typ = typeChar
	case tar.TypeBlock:
		e.typ = typeBlock
	case tar.TypeFifo:
		e.typ = typeFIFO
	default:
		return e, false
	}
	return e, true
}

func walkDir(root string, progress func(done, total int64), fn func(entry) error) error {
	var total, done int64
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	seen := map[[2]uint64]string{} // (dev, ino) of multiply linked files
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("image: walk: %w", err)
		}
		rel, _ := filepath.Rel(root, path)
		fi, err := os.Lstat(path)
		if err != nil {
			return fmt.Errorf("image: walk: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{name: filepath.ToSlash(rel), perm: uint32(st.Mode) & 0o7777, uid: int(st.Uid), gid: int(st.Gid),
			mtime: fi.ModTime()}
		if !fi.IsDir() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := seen[key]; ok {
				e.typ, e.link = typeHardlink, first
				return fn(e)
			}
			seen[key] = e.name
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			e.typ = typeDir
		case m.IsRegular():
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("image: walk: %w", err)
			}
			defer f.Close()
			e.typ, e.body = typeReg, &countingReader{r: f, done: done, total: total, progress: progress}
			done += fi.Size()
		case m&fs.ModeSymlink != 0:
			e.typ = typeSymlink
			if e.link, err = os.Readlink(path); err != nil {
				return fmt.Errorf("image: walk: %w", err)
			}
		case m&fs.ModeNamedPipe != 0:
			e.typ = typeFIFO
		case m&fs.ModeDevice != 0:
			e.typ, e.major, e.minor = typeBlock, unix.Major(st.Rdev), unix.Minor(st.Rdev)
			if m&fs.ModeCharDevice != 0 {
				e.typ = typeChar
			}
		default:
			return nil // sockets are not part of an image
		}
		return fn(e)
	})
}
