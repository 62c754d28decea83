package cow

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// On-disk layout constants.
const (
	// Magic starts every overlay file.
	Magic = "SRCOW1\x00\x00"
	// Version is the format version written by this package.
	Version = 1
	// ChunkSize is the copy-on-write unit: one bitmap bit per chunk.
	ChunkSize = 4096
	// HeaderSize is the space reserved for the header at offset 0.
	HeaderSize = 4096
	// MaxSize bounds the virtual size (64 TiB: a 2 GiB bitmap).
	MaxSize = 64 << 40
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the overlay file's first block. Encoded little-endian:
//
//	0   magic    [8]byte "SRCOW1\0\0"
//	8   version  uint32
//	12  chunk    uint32 (4096)
//	16  size     uint64 virtual size in bytes, a multiple of chunk
//	24  base     [32]byte sha256 of the base image
//	56  dirty    uint32 1 while opened for writing
//	60  reserved uint32
//	64  bitmap offset uint64 (4096)
//	72  bitmap length uint64 (ceil(chunks/8) rounded up to 4096)
//	80  data offset   uint64 (bitmap offset + length); chunk i lives at data+i*chunk
//	88  crc32c of bytes 0..87
type Header struct {
	Size      int64
	Base      [32]byte
	Dirty     bool
	BitmapOff int64
	BitmapLen int64
	DataOff   int64
}

const headerUsed = 92

// NewHeader returns the header of an overlay of size bytes over base.
func NewHeader(size int64, base [32]byte) (Header, error) {
	if size <= 0 || size%ChunkSize != 0 || size > MaxSize {
		return Header{}, fmt.Errorf("cow: size %d: %w", size, ErrBadSize)
	}
	bl := bitmapLen(size)
	return Header{Size: size, Base: base, BitmapOff: HeaderSize, BitmapLen: bl, DataOff: HeaderSize + bl}, nil
}

func bitmapLen(size int64) int64 {
	n := (size/ChunkSize + 7) / 8
	return (n + HeaderSize - 1) / HeaderSize * HeaderSize
}

// Chunks returns the number of chunks of the virtual disk.
func (h Header) Chunks() int64 { return h.Size / ChunkSize }

// MarshalBinary encodes h into a HeaderSize block.
func (h Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderSize)
	copy(b, Magic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], Version)
	le.PutUint32(b[12:], ChunkSize)
	le.PutUint64(b[16:], uint64(h.Size))
	copy(b[24:56], h.Base[:])
	if h.Dirty {
		le.PutUint32(b[56:], 1)
	}
	le.PutUint64(b[64:], uint64(h.BitmapOff))
	le.PutUint64(b[72:], uint64(h.BitmapLen))
	le.PutUint64(b[80:], uint64(h.DataOff))
	le.PutUint32(b[88:], crc32.Checksum(b[:88], castagnoli))
	return b, nil
}

// UnmarshalBinary decodes and validates a header block.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < headerUsed {
		return fmt.Errorf("cow: header of %d bytes: %w", len(b), ErrBadHeader)
	}
	if string(b[:8]) != Magic {
		return fmt.Errorf("cow: magic %q: %w", b[:8], ErrBadHeader)
	}
	le := binary.LittleEndian
	if got := le.Uint32(b[88:]); got != crc32.Checksum(b[:88], castagnoli) {
		return fmt.Errorf("cow: header checksum: %w", ErrBadHeader)
	}
	if v := le.Uint32(b[8:]); v != Version {
		return fmt.Errorf("cow: version %d: %w", v, ErrBadHeader)
	}
	if c := le.Uint32(b[12:]); c != ChunkSize {
		return fmt.Errorf("cow: chunk size %d: %w", c, ErrBadHeader)
	}
	size := le.Uint64(b[16:])
	if size > MaxSize {
		return fmt.Errorf("cow: size %d: %w", size, ErrBadHeader)
	}
	var base [32]byte
	copy(base[:], b[24:56])
	want, err := NewHeader(int64(size), base)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadHeader, err)
	}
	if int64(le.Uint64(b[64:])) != want.BitmapOff || int64(le.Uint64(b[72:])) != want.BitmapLen ||
		int64(le.Uint64(b[80:])) != want.DataOff {
		return fmt.Errorf("cow: bitmap or data offset: %w", ErrBadHeader)
	}
	want.Dirty = le.Uint32(b[56:]) != 0
	*h = want
	return nil
}
