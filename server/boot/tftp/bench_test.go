package tftp

import (
	"fmt"
	"testing"
)

// BenchmarkFetch transfers a 1 MiB file over loopback at several block
// sizes (the lock-step TFTP protocol is bound by round trips).
func BenchmarkFetch(b *testing.B) {
	const size = 1 << 20
	path := writeRandomB(b, b.TempDir(), "f", size)
	addr := startServerB(b, map[string]string{"f": path})
	for _, blksize := range []int{512, 1428, 8192} {
		b.Run(fmt.Sprintf("blksize_%d", blksize), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				got, err := fetch(b, addr, "f", blksize)
				if err != nil || len(got) != size {
					b.Fatalf("fetch: %d bytes, %v", len(got), err)
				}
			}
		})
	}
}
