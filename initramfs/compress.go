package initramfs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ErrUnknownCompression reports an unsupported Options.Compression.
var ErrUnknownCompression = errors.New("initramfs: unknown compression")

// newCompressor returns a deterministic compressing writer the Linux
// initramfs unpacker understands. Close flushes it; it does not close w.
func newCompressor(name string, w io.Writer) (io.WriteCloser, error) {
	switch name {
	case "", "gzip":
		// No name, no mtime in the header: reproducible.
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	case "zstd":
		// One encoder goroutine keeps block boundaries deterministic.
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithEncoderConcurrency(1))
	case "xz":
		// The kernel's XZ decoder supports CRC32 checks (xz --check=crc32).
		cfg := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 1 << 20}
		return cfg.NewWriter(w)
	case "none":
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("%w: %q (want gzip, zstd, xz or none)", ErrUnknownCompression, name)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
