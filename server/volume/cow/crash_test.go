package cow

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

const testChunks = 16

// workload records a random sequence of writes, punches and flushes
// against an overlay on a recording memFile, with enough bookkeeping to
// judge any crash image.
type workload struct {
	base   []byte
	digest [32]byte
	file   *memFile
	start  int // log length once the overlay exists

	model   []byte // the virtual disk as acknowledged so far
	flushes []flushPoint
	writes  []writeRec
}

// flushPoint is a completed flush: the log length when it returned and
// the virtual disk it made durable.
type flushPoint struct {
	at    int
	model []byte
}

// writeRec is a write or punch: the log length when it started and the
// virtual disk once it completed.
type writeRec struct {
	start int
	model []byte
}

func newWorkload(t testing.TB, seed uint64) *workload {
	rng := rand.New(rand.NewPCG(seed, 1))
	base := make([]byte, testChunks*ChunkSize)
	for i := range base {
		base[i] = byte(rng.IntN(250) + 1) // never zero: punches are visible
	}
	w := &workload{base: base, digest: sha256.Sum256(base), file: &memFile{}, model: bytes.Clone(base)}
	return w
}

func (w *workload) create(t testing.TB) *Overlay {
	o, err := Create(w.file, bytes.NewReader(w.base), int64(len(w.base)), w.digest)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	w.start = w.file.logLen()
	w.flushes = []flushPoint{{at: w.start, model: bytes.Clone(w.model)}}
	return o
}

// step runs one operation chosen by the two selector bytes.
func (w *workload) step(t testing.TB, o *Overlay, sel, arg byte, rng *rand.Rand) {
	size := int64(len(w.base))
	switch sel % 8 {
	case 0, 1: // flush
		if err := o.Flush(); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		w.flushes = append(w.flushes, flushPoint{at: w.file.logLen(), model: bytes.Clone(w.model)})
	case 2: // punch
		off := int64(rng.IntN(int(size/sector))) * sector
		n := min(size-off, int64(rng.IntN(3*ChunkSize)+sector)/sector*sector)
		w.record(off, make([]byte, n))
		if err := o.Punch(off, n); err != nil {
			t.Fatalf("Punch: %v", err)
		}
	default: // write: aligned or not, one to three chunks; sel 7 is FUA
		off := int64(rng.IntN(int(size)))
		n := min(size-off, int64(rng.IntN(3*ChunkSize)+1))
		if arg%2 == 0 { // chunk aligned
			off = off / ChunkSize * ChunkSize
			n = min(size-off, ChunkSize*int64(1+arg%3))
		}
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.IntN(250) + 1)
		}
		w.record(off, p)
		var err error
		if sel%8 == 7 {
			_, err = o.WriteAtFUA(p, off)
			w.flushes = append(w.flushes, flushPoint{at: w.file.logLen(), model: bytes.Clone(w.model)})
		} else {
			_, err = o.WriteAt(p, off)
		}
		if err != nil {
			t.Fatalf("WriteAt: %v", err)
		}
	}
}

func (w *workload) record(off int64, p []byte) {
	copy(w.model[off:], p)
	w.writes = append(w.writes, writeRec{start: w.file.logLen(), model: bytes.Clone(w.model)})
}

// check rebuilds the file as of cut, reopens it and checks every sector:
// it holds what the last flush completed before cut made durable, or the
// data of a write issued after that flush (never anything else).
func (w *workload) check(t testing.TB, cut int, keep func(int) bool) {
	t.Helper()
	if err := w.verify(cut, keep); err != nil {
		t.Fatal(err)
	}
}

func (w *workload) verify(cut int, keep func(int) bool) error {
	img := w.file.crashImage(cut, keep)
	o, err := Open(img, bytes.NewReader(w.base), w.digest)
	if err != nil {
		return fmt.Errorf("cut %d: Open: %w", cut, err)
	}
	got := make([]byte, len(w.base))
	if _, err := o.ReadAt(got, 0); err != nil {
		return fmt.Errorf("cut %d: ReadAt: %w", cut, err)
	}
	var fp flushPoint
	for _, f := range w.flushes {
		if f.at <= cut {
			fp = f
		}
	}
	for s := int64(0); s < int64(len(got)); s += sector {
		g := got[s : s+sector]
		if bytes.Equal(g, fp.model[s:s+sector]) || w.writtenAfter(fp.at, cut, s, g) {
			continue
		}
		return fmt.Errorf("cut %d (last flush at %d): sector %d holds data that is neither flushed nor written since",
			cut, fp.at, s/sector)
	}
	return nil
}

func (w *workload) writtenAfter(from, cut int, s int64, g []byte) bool {
	for _, wr := range w.writes {
		if wr.start < from || wr.start >= cut {
			continue
		}
		if bytes.Equal(g, wr.model[s:s+sector]) {
			return true
		}
	}
	return false
}

// run drives n random steps and returns the overlay, open.
func (w *workload) run(t testing.TB, seed uint64, n int) *Overlay {
	rng := rand.New(rand.NewPCG(seed, 2))
	o := w.create(t)
	for range n {
		w.step(t, o, byte(rng.IntN(256)), byte(rng.IntN(256)), rng)
	}
	return o
}

func TestCrashEveryPrefix(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		w := newWorkload(t, seed)
		w.run(t, seed, 60)
		total := w.file.logLen()
		keepNone := func(int) bool { return false }
		keepAll := func(int) bool { return true }
		for cut := w.start; cut <= total; cut++ {
			w.check(t, cut, keepNone)
			w.check(t, cut, keepAll)
		}
		t.Logf("seed %d: %d operations, %d cut points, %d flushes", seed, total, total-w.start+1, len(w.flushes))
	}
}

// TestCrashCatchesBrokenOrder shows the model finds a bit written before
// its data: the checker must not be vacuous.
func TestCrashCatchesBrokenOrder(t *testing.T) {
	w := newWorkload(t, 9)
	o := w.create(t)
	p := bytes.Repeat([]byte{7}, ChunkSize)
	w.record(0, p)
	if _, err := o.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	// Write the bitmap page before syncing the data, as a broken flush would.
	o.durable[0] |= 1
	if _, err := w.file.WriteAt(o.durable[:HeaderSize], o.hdr.BitmapOff); err != nil {
		t.Fatal(err)
	}
	// Crash keeping the bitmap page but not the chunk's data.
	isData := func(i int) bool {
		op := w.file.log[i]
		return op.kind == opWrite && op.off >= o.hdr.DataOff && op.off < o.hdr.DataOff+ChunkSize
	}
	err := w.verify(w.file.logLen(), func(i int) bool { return !isData(i) })
	t.Logf("verify: %v", err)
	if err == nil {
		t.Fatal("checker accepted a chunk whose bit was durable before its data")
	}
}

func TestOpenRefusesOtherBase(t *testing.T) {
	w := newWorkload(t, 4)
	o := w.create(t)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(w.file, bytes.NewReader(w.base), sha256.Sum256([]byte("another base")))
	if !errors.Is(err, ErrBaseMismatch) {
		t.Fatalf("Open with another base: err = %v, want ErrBaseMismatch", err)
	}
}

func FuzzCrash(f *testing.F) {
	f.Add([]byte{3, 0, 4, 1, 0, 0, 7, 2, 2, 0, 5, 1, 0, 0}, uint64(1), uint64(7))
	f.Add([]byte{7, 0, 7, 1, 2, 3, 5, 5, 0, 0}, uint64(2), uint64(8))
	f.Fuzz(func(t *testing.T, prog []byte, seed, keepSeed uint64) {
		if len(prog) > 200 {
			prog = prog[:200]
		}
		w := newWorkload(t, seed)
		o := w.create(t)
		rng := rand.New(rand.NewPCG(seed, 3))
		for i := 0; i+1 < len(prog); i += 2 {
			w.step(t, o, prog[i], prog[i+1], rng)
		}
		keep := rand.New(rand.NewPCG(keepSeed, 4))
		total := w.file.logLen()
		for cut := w.start; cut <= total; cut++ {
			bits := make([]bool, cut)
			for i := range bits {
				bits[i] = keep.IntN(2) == 0
			}
			w.check(t, cut, func(i int) bool { return bits[i] })
		}
	})
}
