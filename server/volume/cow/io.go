package cow

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ReadAt reads the virtual disk: present chunks from the overlay, the rest
// from the base.
func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if err := o.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return 0, ErrClosed
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		here := o.isPresent(pos / ChunkSize)
		n := o.runLen(pos, len(p)-done, here)
		var err error
		if here {
			_, err = o.f.ReadAt(p[done:done+n], o.hdr.DataOff+pos)
		} else {
			_, err = o.base.ReadAt(p[done:done+n], pos)
		}
		if err != nil {
			return done, fmt.Errorf("cow: read at %d: %w", pos, err)
		}
		done += n
	}
	return done, nil
}

// runLen returns how many bytes from pos (at most max) lie in chunks whose
// presence is here. Called with mu held.
func (o *Overlay) runLen(pos int64, max int, here bool) int {
	n := 0
	for n < max {
		c := (pos + int64(n)) / ChunkSize
		if o.isPresent(c) != here {
			break
		}
		n += int(min(int64(max-n), (c+1)*ChunkSize-(pos+int64(n))))
	}
	return n
}

// WriteAt writes p at off. The write is durable after the next Flush.
func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if err := o.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	// Fast path: every chunk present, overwrite in place.
	o.mu.RLock()
	if o.closed {
		o.mu.RUnlock()
		return 0, ErrClosed
	}
	if o.allPresent(off, int64(len(p))) {
		n, err := o.f.WriteAt(p, o.hdr.DataOff+off)
		o.mu.RUnlock()
		if err != nil {
			return n, fmt.Errorf("cow: write at %d: %w", off, err)
		}
		return n, nil
	}
	o.mu.RUnlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, ErrClosed
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		c := pos / ChunkSize
		n := int(min(int64(len(p)-done), (c+1)*ChunkSize-pos))
		if err := o.writeChunkLocked(c, p[done:done+n], pos-c*ChunkSize); err != nil {
			return done, err
		}
		done += n
	}
	return len(p), nil
}

// writeChunkLocked writes b at offset in within chunk c, copying the base
// chunk first when c is new and b does not cover it. Called with mu held.
func (o *Overlay) writeChunkLocked(c int64, b []byte, in int64) error {
	at := o.hdr.DataOff + c*ChunkSize
	if o.isPresent(c) {
		if _, err := o.f.WriteAt(b, at+in); err != nil {
			return fmt.Errorf("cow: write chunk %d: %w", c, err)
		}
		return nil
	}
	if len(b) < ChunkSize {
		full := make([]byte, ChunkSize)
		if _, err := o.base.ReadAt(full, c*ChunkSize); err != nil {
			return fmt.Errorf("cow: read base chunk %d: %w", c, err)
		}
		copy(full[in:], b)
		b = full
	}
	if _, err := o.f.WriteAt(b, at); err != nil {
		return fmt.Errorf("cow: write chunk %d: %w", c, err)
	}
	o.setPresentLocked(c)
	return nil
}

// WriteAtFUA writes p at off and returns once it is durable.
func (o *Overlay) WriteAtFUA(p []byte, off int64) (int, error) {
	n, err := o.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	return n, o.Flush()
}

// Punch makes [off, off+n) read as zeros (UNMAP/TRIM). Whole chunks become
// holes in the overlay; partial chunks are written with zeros. The base is
// never exposed again. Like a write, it is durable after the next Flush.
func (o *Overlay) Punch(off, n int64) error {
	if err := o.check(off, n); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	for end := off + n; off < end; {
		c := off / ChunkSize
		m := min(end-off, (c+1)*ChunkSize-off)
		if m < ChunkSize {
			if err := o.writeChunkLocked(c, make([]byte, m), off-c*ChunkSize); err != nil {
				return err
			}
		} else {
			if err := o.f.Punch(o.hdr.DataOff+off, m); err != nil {
				return fmt.Errorf("cow: punch chunk %d: %w", c, err)
			}
			if !o.isPresent(c) {
				o.setPresentLocked(c)
			}
		}
		off += m
	}
	return nil
}

func (o *Overlay) check(off, n int64) error {
	if off < 0 || n < 0 || off > o.hdr.Size || n > o.hdr.Size-off {
		return fmt.Errorf("cow: %d bytes at %d, size %d: %w", n, off, o.hdr.Size, ErrOutOfRange)
	}
	return nil
}

func (o *Overlay) isPresent(c int64) bool { return o.present[c/8]&(1<<(c%8)) != 0 }

func (o *Overlay) setPresentLocked(c int64) {
	o.present[c/8] |= 1 << (c % 8)
	o.pending = append(o.pending, c)
}

func (o *Overlay) allPresent(off, n int64) bool {
	if n == 0 {
		return true
	}
	for c := off / ChunkSize; c <= (off+n-1)/ChunkSize; c++ {
		if !o.isPresent(c) {
			return false
		}
	}
	return true
}

// OSFile adapts an *os.File: Sync is fdatasync, Punch punches a hole.
type OSFile struct{ *os.File }

// Sync calls fdatasync.
func (f OSFile) Sync() error {
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}

// Punch deallocates [off, off+n), which then reads as zeros.
func (f OSFile) Punch(off, n int64) error {
	const mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	if err := unix.Fallocate(int(f.Fd()), mode, off, n); err != nil {
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	return nil
}
