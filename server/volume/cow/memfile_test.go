package cow

import (
	"io"
	"sync"
)

// sector is the atomic unit of the recording disk: a crash may keep any
// subset of unsynced sector writes.
const sector = 512

type opKind int

const (
	opWrite opKind = iota
	opSync
	opTruncate
)

// op is one recorded operation on the file. Writes and punches are
// recorded as whole sectors holding the sector's content after the write,
// as a page cache writes them back: a crash keeps any subset of unsynced
// sector writes, so a sector always holds one of its past contents.
type op struct {
	kind opKind
	off  int64
	data []byte // opWrite: one whole sector
	size int64  // opTruncate
}

// memFile is an in-memory File that records every operation, so that the
// file can be rebuilt as of any prefix of the log.
type memFile struct {
	mu   sync.Mutex
	data []byte
	log  []op
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(p, off)
	return len(p), nil
}

func (f *memFile) Punch(off, n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(make([]byte, n), off)
	return nil
}

func (f *memFile) record(p []byte, off int64) {
	if end := off + int64(len(p)); end > int64(len(f.data)) {
		f.data = append(f.data, make([]byte, end-int64(len(f.data)))...)
	}
	copy(f.data[off:], p)
	for s := off / sector * sector; s < off+int64(len(p)); s += sector {
		sec := make([]byte, sector)
		copy(sec, f.data[s:min(s+sector, int64(len(f.data)))])
		f.log = append(f.log, op{kind: opWrite, off: s, data: sec})
	}
}

func (f *memFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, op{kind: opSync})
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := op{kind: opTruncate, size: size}
	f.log = append(f.log, o)
	f.data = apply(f.data, o)
	return nil
}

func (f *memFile) Close() error { return nil }

func (f *memFile) logLen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.log)
}

func apply(data []byte, o op) []byte {
	switch o.kind {
	case opWrite:
		if end := o.off + int64(len(o.data)); end > int64(len(data)) {
			data = append(data, make([]byte, end-int64(len(data)))...)
		}
		copy(data[o.off:], o.data)
	case opTruncate:
		if o.size <= int64(len(data)) {
			data = data[:o.size]
		} else {
			data = append(data, make([]byte, o.size-int64(len(data)))...)
		}
	}
	return data
}

// crashImage returns the file as it may be found after a crash at cut (ops
// [0, cut) were issued). Operations followed by a Sync before cut are
// durable; any other is kept when keep(i) says so.
func (f *memFile) crashImage(cut int, keep func(i int) bool) *memFile {
	f.mu.Lock()
	defer f.mu.Unlock()
	lastSync := -1
	for i := cut - 1; i >= 0; i-- {
		if f.log[i].kind == opSync {
			lastSync = i
			break
		}
	}
	var data []byte
	for i := 0; i < cut; i++ {
		if i < lastSync || keep(i) {
			data = apply(data, f.log[i])
		}
	}
	return &memFile{data: data}
}
