package storm

import (
	"slices"
	"testing"
)

// The READ pattern is the measured boot's: 546 READs, whole 512-byte
// blocks, 43.3 MiB per pass at the buckets' upper sizes (as rootReadSizes
// says), the same order for every machine; SEALROOT_STORM_ROOT_CHUNK
// replaces it with one size.
func TestRootReadSizes(t *testing.T) {
	t.Setenv("SEALROOT_STORM_ROOT_CHUNK", "")
	sizes := rootReadSizes()
	total := 0
	for _, n := range sizes {
		if n <= 0 || n%512 != 0 {
			t.Fatalf("READ of %d bytes: not whole blocks", n)
		}
		total += n
	}
	if len(sizes) != 546 || total>>20 != 43 {
		t.Errorf("pattern: %d READs, %d MiB; want 546 READs, 43 MiB", len(sizes), total>>20)
	}
	if !slices.Equal(sizes, rootReadSizes()) {
		t.Error("two machines' READ orders differ")
	}
	if slices.IsSorted(sizes) {
		t.Error("READs in size order: small and large ones should interleave as in a boot")
	}
	t.Setenv("SEALROOT_STORM_ROOT_CHUNK", "512")
	if got := rootReadSizes(); !slices.Equal(got, []int{512 << 10}) {
		t.Errorf("SEALROOT_STORM_ROOT_CHUNK=512: %v, want one size of 512 KiB", got)
	}
}
