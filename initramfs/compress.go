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

// DefaultCompression is the compression of Options.Compression "". Of the
// three encoders here zstd gives the smallest default image (6,266,392
// bytes against 7,585,798 gzip and 6,729,920 xz) and the kernel unpacks it
// fastest; `make bench-initramfs` prints both figures.
const DefaultCompression = "zstd"

// zstdWindow is the zstd window (and the kernel decoder's buffer) size.
const zstdWindow = 16 << 20

// newCompressor returns a deterministic compressing writer the Linux
// initramfs unpacker understands. Close flushes it; it does not close w.
func newCompressor(name string, w io.Writer) (io.WriteCloser, error) {
	if name == "" {
		name = DefaultCompression
	}
	switch name {
	case "gzip":
		// No name, no mtime in the header: reproducible.
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	case "zstd":
		// One encoder goroutine keeps block boundaries deterministic. The
		// window spans the agent and the first stage, which share much of
		// their code (5% smaller than with the default 8 MiB window);
		// the kernel accepts windows up to 128 MiB and allocates the
		// window's size once while unpacking.
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdWindow))
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
