package backup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A sparse file's entry holds only its data segments, back to back; two
// PAX records say where they go.
const (
	paxSparseMap  = "SEALROOT.sparse.map"  // "OFF:LEN,OFF:LEN,..."
	paxSparseSize = "SEALROOT.sparse.size" // the file's size
)

type segment struct{ off, n int64 }

// dataSegments finds f's data with SEEK_DATA and SEEK_HOLE; a file
// system without them has one segment, the whole file.
func dataSegments(f *os.File, size int64) ([]segment, error) {
	fd := int(f.Fd())
	var segs []segment
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole from off to the end
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return []segment{{0, size}}, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "seek data", Path: f.Name(), Err: err}
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, &os.PathError{Op: "seek hole", Path: f.Name(), Err: err}
		}
		hole = min(hole, size)
		if hole > data {
			segs = append(segs, segment{data, hole - data})
		}
		off = hole
	}
	return segs, nil
}

// writeSparse adds the regular file at p under h: all of it, or, when it
// has holes, only its data segments with their map.
func writeSparse(tw *tar.Writer, h *tar.Header, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	size := h.Size
	segs, err := dataSegments(f, size)
	if err != nil {
		return err
	}
	var total int64
	var m []string
	for _, s := range segs {
		total += s.n
		m = append(m, fmt.Sprintf("%d:%d", s.off, s.n))
	}
	if total != size {
		h.Size = total
		h.PAXRecords[paxSparseMap] = strings.Join(m, ",")
		h.PAXRecords[paxSparseSize] = strconv.FormatInt(size, 10)
	} else {
		segs = []segment{{0, size}}
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	for _, s := range segs {
		if _, err := io.Copy(tw, io.NewSectionReader(f, s.off, s.n)); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// parseSparse reads h's segment map: nil for a whole file. The segments
// must be in order, inside the file, and fill h.Size exactly.
func parseSparse(h *tar.Header) ([]segment, int64, error) {
	m, ok := h.PAXRecords[paxSparseMap]
	if !ok {
		return nil, h.Size, nil
	}
	size, err := strconv.ParseInt(h.PAXRecords[paxSparseSize], 10, 64)
	if err != nil || size < 0 {
		return nil, 0, fmt.Errorf("%s: bad sparse size %q", h.Name, h.PAXRecords[paxSparseSize])
	}
	var segs []segment
	var end, total int64
	for _, f := range strings.Split(m, ",") {
		if f == "" {
			continue
		}
		a, b, _ := strings.Cut(f, ":")
		off, err1 := strconv.ParseInt(a, 10, 64)
		n, err2 := strconv.ParseInt(b, 10, 64)
		if err1 != nil || err2 != nil || off < end || n <= 0 || off > size-n {
			return nil, 0, fmt.Errorf("%s: bad sparse map entry %q", h.Name, f)
		}
		segs = append(segs, segment{off, n})
		end, total = off+n, total+n
	}
	if total != h.Size {
		return nil, 0, fmt.Errorf("%s: sparse map holds %d bytes, the entry %d", h.Name, total, h.Size)
	}
	return segs, size, nil
}

// restoreData writes r's data into f at h's segments (all of it for a
// whole file) and sets f's size: the holes stay holes.
func restoreData(f *os.File, h *tar.Header, r io.Reader) error {
	segs, size, err := parseSparse(h)
	if err != nil {
		return err
	}
	if segs == nil {
		_, err := io.Copy(f, r)
		return err
	}
	for _, s := range segs {
		if _, err := io.Copy(io.NewOffsetWriter(f, s.off), io.LimitReader(r, s.n)); err != nil {
			return err
		}
	}
	return f.Truncate(size)
}
