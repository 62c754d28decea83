package volume

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/server/volume/cow"
)

// blockDev is what both backends provide.
type blockDev interface {
	io.ReaderAt
	io.WriterAt
	WriteAtFUA(p []byte, off int64) (int, error)
	Size() int64
	Sync() error
	Punch(off, n int64) error
	Close() error
}

// Volume is an open machine volume: the shape of an iSCSI backing store.
// Close it to let maintenance operations run.
type Volume struct {
	blockDev
	MachineID string
	Base      string
	Backend   Backend

	m    *Manager
	once bool
}

// Close closes the volume (flushing a cow overlay). Safe to call twice.
func (v *Volume) Close() error {
	v.m.mu.Lock()
	if v.once {
		v.m.mu.Unlock()
		return nil
	}
	v.once = true
	delete(v.m.open, v.MachineID)
	v.m.mu.Unlock()
	return v.blockDev.Close()
}

// rawDisk is a reflink clone: a plain file the size of the base.
type rawDisk struct {
	f    *os.File
	size int64
}

func (d *rawDisk) ReadAt(p []byte, off int64) (int, error) {
	if err := d.check(off, len(p)); err != nil {
		return 0, err
	}
	return d.f.ReadAt(p, off)
}

func (d *rawDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := d.check(off, len(p)); err != nil {
		return 0, err
	}
	return d.f.WriteAt(p, off)
}

// WriteAtFUA writes with RWF_DSYNC: durable on return.
func (d *rawDisk) WriteAtFUA(p []byte, off int64) (int, error) {
	if err := d.check(off, len(p)); err != nil {
		return 0, err
	}
	n, err := unix.Pwritev2(int(d.f.Fd()), [][]byte{p}, off, unix.RWF_DSYNC)
	if err != nil {
		return n, &os.PathError{Op: "pwritev2", Path: d.f.Name(), Err: err}
	}
	return n, nil
}

func (d *rawDisk) Size() int64 { return d.size }

func (d *rawDisk) Sync() error { return cow.OSFile{File: d.f}.Sync() }

func (d *rawDisk) Punch(off, n int64) error {
	if err := d.check(off, int(n)); err != nil {
		return err
	}
	return cow.OSFile{File: d.f}.Punch(off, n)
}

func (d *rawDisk) Close() error { return errors.Join(d.Sync(), d.f.Close()) }

func (d *rawDisk) check(off int64, n int) error {
	if off < 0 || n < 0 || off > d.size || int64(n) > d.size-off {
		return fmt.Errorf("volume: %d bytes at %d, size %d: %w", n, off, d.size, cow.ErrOutOfRange)
	}
	return nil
}

// cloneFile makes dst a reflink clone of src. It returns errNoReflink when
// the filesystem cannot.
func cloneFile(dst, src string) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = unix.IoctlFileClone(int(d.Fd()), int(s.Fd()))
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS) {
		d.Close()
		os.Remove(dst)
		return errNoReflink
	}
	if err == nil {
		err = d.Sync()
	}
	if err = errors.Join(err, d.Close()); err != nil {
		os.Remove(dst)
		return fmt.Errorf("volume: clone %s: %w", src, err)
	}
	return nil
}

var errNoReflink = errors.New("filesystem cannot clone files")

// copyCOW copies a closed cow overlay: header, bitmap and present chunks,
// keeping the rest sparse.
func copyCOW(dst, src string) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	h, err := cow.ReadHeader(s)
	if err != nil {
		return err
	}
	d, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = copyCOWData(d, s, h)
	if err == nil {
		err = d.Sync()
	}
	if err = errors.Join(err, d.Close()); err != nil {
		os.Remove(dst)
		return fmt.Errorf("volume: copy %s: %w", src, err)
	}
	return nil
}

func copyCOWData(d, s *os.File, h cow.Header) error {
	if err := d.Truncate(h.DataOff + h.Size); err != nil {
		return err
	}
	meta := make([]byte, h.DataOff)
	if _, err := s.ReadAt(meta, 0); err != nil {
		return err
	}
	if _, err := d.WriteAt(meta, 0); err != nil {
		return err
	}
	bm := meta[h.BitmapOff:]
	buf := make([]byte, cow.ChunkSize)
	for c := int64(0); c < h.Chunks(); c++ {
		if bm[c/8]&(1<<(c%8)) == 0 {
			continue
		}
		off := h.DataOff + c*cow.ChunkSize
		if _, err := s.ReadAt(buf, off); err != nil {
			return err
		}
		if _, err := d.WriteAt(buf, off); err != nil {
			return err
		}
	}
	return nil
}
