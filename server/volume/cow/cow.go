// Package cow is sealroot's copy-on-write overlay format for stores whose
// filesystem cannot clone files (ext4 and others without FICLONE).
//
// # Format
//
// One sparse file: a 4 KiB Header (magic "SRCOW1", version, chunk size,
// virtual size, the base image's sha256, a dirty flag, bitmap and data
// offsets), a bitmap with one bit per 4 KiB chunk, then the data area with
// identity offsets: chunk i lives at DataOff + i*ChunkSize. A chunk whose
// bit is set is read from the overlay, any other from the base.
//
// # Durability
//
// The invariant: a chunk's bit reaches the disk only after its data. A
// write to a present chunk overwrites it in place. A write to a new chunk
// writes the whole chunk (a partial write first copies the base chunk:
// read-modify-write at chunk granularity, so the overlay never mixes base
// and overlay bytes inside one chunk), then sets the bit in memory and
// queues it. Flush does fdatasync, then writes the bitmap pages holding the
// queued bits, then fdatasync again, and only then returns. A crash loses
// at most writes not yet flushed: a lost bit makes the chunk read from the
// base again, which is the pre-write content. WriteAtFUA is WriteAt then
// Flush. Punch makes chunks read as zeros from the overlay (a hole in the
// data area), never from the base.
//
// The dirty flag is set while an overlay is open for writing and cleared
// by Close; a set flag at Open reports an unclean shutdown, which the
// invariant makes harmless.
//
// # Concurrency
//
// An Overlay is safe for concurrent use. Reads and in-place writes run in
// parallel; writes that allocate chunks are serialized; Flush lets writes
// continue while it waits for the disk.
package cow

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Errors.
var (
	// ErrBaseMismatch means the overlay was made over a different base.
	ErrBaseMismatch = errors.New("overlay base digest mismatch")
	// ErrBadHeader means the file is not a valid overlay.
	ErrBadHeader = errors.New("invalid overlay header")
	// ErrBadSize means a virtual size is not a positive multiple of
	// ChunkSize up to MaxSize.
	ErrBadSize = errors.New("invalid overlay size")
	// ErrOutOfRange means an I/O reaches outside the virtual disk.
	ErrOutOfRange = errors.New("i/o outside the virtual disk")
	// ErrClosed means the overlay was closed.
	ErrClosed = errors.New("overlay closed")
)

// File is the storage under an overlay: an *os.File through OSFile, or a
// recording fake in tests. Sync must make every completed WriteAt and
// Punch durable (fdatasync). Punch makes a range read as zeros.
type File interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Punch(off, n int64) error
	Truncate(size int64) error
	Close() error
}

// Overlay is an open copy-on-write overlay.
type Overlay struct {
	f    File
	base io.ReaderAt
	hdr  Header

	flushMu sync.Mutex // serializes Flush and Close; held before mu

	mu      sync.RWMutex // guards the fields below
	present []byte       // bits as reads see them
	durable []byte       // bits as the next flush writes them
	pending []int64      // chunks present but not yet in durable
	closed  bool
}

// Create initializes f as an empty overlay of size bytes over base, whose
// sha256 is baseDigest, and returns it open.
func Create(f File, base io.ReaderAt, size int64, baseDigest [32]byte) (*Overlay, error) {
	h, err := NewHeader(size, baseDigest)
	if err != nil {
		return nil, err
	}
	// The whole file is sparse: zero bitmap, no data.
	if err := f.Truncate(h.DataOff + h.Size); err != nil {
		return nil, fmt.Errorf("cow: size overlay: %w", err)
	}
	if err := writeHeader(f, h); err != nil {
		return nil, err
	}
	return Open(f, base, baseDigest)
}

// Open opens the overlay in f over base. It refuses, with ErrBaseMismatch,
// an overlay whose recorded base digest is not baseDigest.
func Open(f File, base io.ReaderAt, baseDigest [32]byte) (*Overlay, error) {
	h, err := ReadHeader(f)
	if err != nil {
		return nil, err
	}
	if h.Base != baseDigest {
		return nil, fmt.Errorf("cow: overlay records base sha256:%s, opened against sha256:%s: %w",
			hex.EncodeToString(h.Base[:]), hex.EncodeToString(baseDigest[:]), ErrBaseMismatch)
	}
	bm := make([]byte, h.BitmapLen)
	if _, err := f.ReadAt(bm, h.BitmapOff); err != nil {
		return nil, fmt.Errorf("cow: read bitmap: %w", err)
	}
	o := &Overlay{f: f, base: base, hdr: h, present: bm, durable: bytes.Clone(bm)}
	h.Dirty = true
	if err := writeHeader(f, h); err != nil {
		return nil, err
	}
	return o, nil
}

// ReadHeader reads and validates the header of an overlay file.
func ReadHeader(r io.ReaderAt) (Header, error) {
	b := make([]byte, headerUsed)
	if _, err := r.ReadAt(b, 0); err != nil {
		return Header{}, fmt.Errorf("cow: read header: %w", err)
	}
	var h Header
	return h, h.UnmarshalBinary(b)
}

func writeHeader(f File, h Header) error {
	b, _ := h.MarshalBinary()
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("cow: write header: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cow: sync header: %w", err)
	}
	return nil
}

// Header returns the overlay's header as opened.
func (o *Overlay) Header() Header { return o.hdr }

// Size returns the virtual size in bytes.
func (o *Overlay) Size() int64 { return o.hdr.Size }

// Sync is Flush.
func (o *Overlay) Sync() error { return o.Flush() }

// Close flushes, clears the dirty flag and closes the file. Close is safe
// to call twice.
func (o *Overlay) Close() error {
	o.flushMu.Lock()
	defer o.flushMu.Unlock()
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if closed {
		return nil
	}
	err := o.flushLocked()
	if err == nil {
		h := o.hdr
		h.Dirty = false
		err = writeHeader(o.f, h)
	}
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	return errors.Join(err, o.f.Close())
}

// Flush makes every write completed before the call durable.
func (o *Overlay) Flush() error {
	o.flushMu.Lock()
	defer o.flushMu.Unlock()
	o.mu.RLock()
	closed := o.closed
	o.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return o.flushLocked()
}

// flushLocked runs with flushMu held: data first, then the bits.
func (o *Overlay) flushLocked() error {
	o.mu.Lock()
	chunks := o.pending
	o.pending = nil
	o.mu.Unlock()
	if err := o.f.Sync(); err != nil {
		o.requeue(chunks)
		return fmt.Errorf("cow: sync data: %w", err)
	}
	if len(chunks) == 0 {
		return nil
	}
	err := o.markDurable(chunks)
	if err == nil {
		err = o.f.Sync()
	}
	if err != nil {
		// Setting a durable bit twice is harmless: requeue so that a
		// later flush writes the page again.
		o.requeue(chunks)
		return fmt.Errorf("cow: write bitmap: %w", err)
	}
	return nil
}

func (o *Overlay) requeue(chunks []int64) {
	o.mu.Lock()
	o.pending = append(o.pending, chunks...)
	o.mu.Unlock()
}

// markDurable sets chunks' bits in the durable bitmap and writes the
// pages holding them. Their data is already synced.
func (o *Overlay) markDurable(chunks []int64) error {
	o.mu.Lock()
	dirty := map[int64]bool{}
	for _, c := range chunks {
		o.durable[c/8] |= 1 << (c % 8)
		dirty[c/8/HeaderSize] = true
	}
	type page struct {
		off int64
		b   []byte
	}
	var pages []page
	for p := range dirty {
		b := bytes.Clone(o.durable[p*HeaderSize : (p+1)*HeaderSize])
		pages = append(pages, page{o.hdr.BitmapOff + p*HeaderSize, b})
	}
	o.mu.Unlock()
	for _, p := range pages {
		if _, err := o.f.WriteAt(p.b, p.off); err != nil {
			return err
		}
	}
	return nil
}
