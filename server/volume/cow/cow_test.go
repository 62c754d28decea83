package cow

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// openFileOverlay creates an overlay in a real sparse file over a base of
// chunks random-ish chunks.
func openFileOverlay(t testing.TB, chunks int) (*Overlay, string, []byte, [32]byte) {
	base := make([]byte, chunks*ChunkSize)
	for i := range base {
		base[i] = byte(i*7 + 1)
	}
	digest := sha256.Sum256(base)
	path := filepath.Join(t.TempDir(), "m.cow")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	o, err := Create(OSFile{f}, bytes.NewReader(base), int64(len(base)), digest)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return o, path, base, digest
}

func reopen(t *testing.T, path string, base []byte, digest [32]byte) *Overlay {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(OSFile{f}, bytes.NewReader(base), digest)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return o
}

func TestOverlayFile(t *testing.T) {
	o, path, base, digest := openFileOverlay(t, 8)
	want := bytes.Clone(base)
	apply := func(off int64, p []byte) {
		copy(want[off:], p)
	}
	p := bytes.Repeat([]byte{0xAA}, 100)
	if _, err := o.WriteAt(p, 5000); err != nil { // partial, new chunk 1
		t.Fatal(err)
	}
	apply(5000, p)
	q := bytes.Repeat([]byte{0xBB}, 2*ChunkSize)
	if _, err := o.WriteAtFUA(q, 4*ChunkSize); err != nil { // whole chunks 4, 5
		t.Fatal(err)
	}
	apply(4*ChunkSize, q)
	if err := o.Punch(6*ChunkSize+100, ChunkSize+200); err != nil { // partial 6, partial 7
		t.Fatal(err)
	}
	apply(6*ChunkSize+100, make([]byte, ChunkSize+200))
	if err := o.Punch(2*ChunkSize, ChunkSize); err != nil { // whole chunk 2
		t.Fatal(err)
	}
	apply(2*ChunkSize, make([]byte, ChunkSize))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	o = reopen(t, path, base, digest)
	defer o.Close()
	if o.Header().Dirty != false {
		t.Error("clean close left the dirty flag set")
	}
	got := make([]byte, len(base))
	if _, err := o.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("reopened overlay does not read back what was written")
	}
}

func TestOutOfRange(t *testing.T) {
	o, _, _, _ := openFileOverlay(t, 2)
	defer o.Close()
	tests := []struct {
		name string
		off  int64
		n    int
	}{
		{"negative_offset", -1, 1},
		{"past_end", 2 * ChunkSize, 1},
		{"straddles_end", 2*ChunkSize - 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := o.WriteAt(make([]byte, tt.n), tt.off); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("WriteAt = %v, want ErrOutOfRange", err)
			}
			if _, err := o.ReadAt(make([]byte, tt.n), tt.off); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("ReadAt = %v, want ErrOutOfRange", err)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h, err := NewHeader(1<<30, sha256.Sum256([]byte("base")))
	if err != nil {
		t.Fatal(err)
	}
	h.Dirty = true
	b, _ := h.MarshalBinary()
	var got Header
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Fatalf("round trip = %+v, want %+v", got, h)
	}
	b[20] ^= 1
	if err := got.UnmarshalBinary(b); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("corrupt header: err = %v, want ErrBadHeader", err)
	}
	if _, err := NewHeader(ChunkSize+1, [32]byte{}); !errors.Is(err, ErrBadSize) {
		t.Fatalf("NewHeader(unaligned) = %v, want ErrBadSize", err)
	}
}

func FuzzHeader(f *testing.F) {
	h, _ := NewHeader(1<<20, [32]byte{1})
	b, _ := h.MarshalBinary()
	f.Add(b[:headerUsed])
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		if err := h.UnmarshalBinary(b); err != nil {
			return
		}
		out, _ := h.MarshalBinary()
		var h2 Header
		if err := h2.UnmarshalBinary(out); err != nil || h2 != h {
			t.Fatalf("re-encode: %v, %+v != %+v", err, h2, h)
		}
	})
}

func BenchmarkFallbackWrite4K(b *testing.B) {
	const chunks = 16384 // 64 MiB
	o, _, _, _ := openFileOverlay(b, chunks)
	defer o.Close()
	p := bytes.Repeat([]byte{1}, ChunkSize)
	b.SetBytes(ChunkSize)
	for i := 0; b.Loop(); i++ {
		c := int64(i*7919) % chunks
		if _, err := o.WriteAt(p, c*ChunkSize); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			if err := o.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkFallbackRead4K(b *testing.B) {
	const chunks = 16384
	o, _, _, _ := openFileOverlay(b, chunks)
	defer o.Close()
	p := make([]byte, ChunkSize)
	for c := int64(0); c < chunks; c += 2 { // half the chunks in the overlay
		if _, err := o.WriteAt(p, c*ChunkSize); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(ChunkSize)
	for i := 0; b.Loop(); i++ {
		c := int64(i*7919) % chunks
		if _, err := o.ReadAt(p, c*ChunkSize); err != nil {
			b.Fatal(err)
		}
	}
}
