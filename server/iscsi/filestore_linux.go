package iscsi

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FileStore is a BackingStore on a regular file: pread/pwrite,
// fdatasync for SYNCHRONIZE CACHE, pwritev2(RWF_DSYNC) for FUA writes,
// and fallocate(PUNCH_HOLE|KEEP_SIZE) for UNMAP. Safe for concurrent use.
type FileStore struct {
	f    *os.File
	size int64
}

// OpenFile opens path read-write as a backing store; its size is
// fixed at open time and rounded down to whole 512-byte blocks.
func OpenFile(path string) (*FileStore, error) { return openFile(path, os.O_RDWR) }

// OpenFileReadOnly opens path read-only, for a Target with ReadOnly set:
// the kernel refuses any write that got past the target.
func OpenFileReadOnly(path string) (*FileStore, error) { return openFile(path, os.O_RDONLY) }

func openFile(path string, flag int) (*FileStore, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("iscsi: open backing store: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("iscsi: stat backing store: %w", err)
	}
	return &FileStore{f: f, size: fi.Size() &^ 511}, nil
}

// ReadAt implements io.ReaderAt.
func (s *FileStore) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }

// WriteAt implements io.WriterAt.
func (s *FileStore) WriteAt(p []byte, off int64) (int, error) { return s.f.WriteAt(p, off) }

// Size is the store's length in bytes.
func (s *FileStore) Size() int64 { return s.size }

// Sync flushes written data to stable storage (fdatasync).
func (s *FileStore) Sync() error {
	if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
		return &os.PathError{Op: "fdatasync", Path: s.f.Name(), Err: err}
	}
	return nil
}

// WriteAtFUA writes p at off and returns once it is on stable storage.
func (s *FileStore) WriteAtFUA(p []byte, off int64) (int, error) {
	total := 0
	for total < len(p) {
		n, err := unix.Pwritev2(int(s.f.Fd()), [][]byte{p[total:]}, off+int64(total), unix.RWF_DSYNC)
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
			if _, err := s.WriteAt(p[total:], off+int64(total)); err != nil {
				return total, err
			}
			return len(p), s.Sync()
		}
		if err != nil {
			return total, &os.PathError{Op: "pwritev2", Path: s.f.Name(), Err: err}
		}
		total += n
	}
	return total, nil
}

// Punch deallocates n bytes at off; they read back as zeros. Where the
// filesystem cannot punch holes, it writes zeros.
func (s *FileStore) Punch(off, n int64) error {
	err := unix.Fallocate(int(s.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return &os.PathError{Op: "fallocate", Path: s.f.Name(), Err: err}
	}
	zero := make([]byte, min(n, 1<<20))
	for done := int64(0); done < n; {
		m := min(int64(len(zero)), n-done)
		if _, err := s.WriteAt(zero[:m], off+done); err != nil {
			return err
		}
		done += m
	}
	return nil
}

// Close closes the file.
func (s *FileStore) Close() error { return s.f.Close() }

// Extent reports whether the byte at off is allocated and the length
// of the run sharing that state (SEEK_DATA/SEEK_HOLE).
func (s *FileStore) Extent(off int64) (mapped bool, n int64, err error) {
	fd := int(s.f.Fd())
	data, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return false, s.size - off, nil // a hole up to the end of the file
	}
	if err != nil {
		return false, 0, &os.PathError{Op: "lseek", Path: s.f.Name(), Err: err}
	}
	if data > off {
		return false, min(data, s.size) - off, nil
	}
	hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, &os.PathError{Op: "lseek", Path: s.f.Name(), Err: err}
	}
	return true, min(hole, s.size) - off, nil
}
