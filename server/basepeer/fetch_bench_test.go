package basepeer

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/test/testenv"
)

// BenchmarkFetch fetches a base of about 64 MiB of random data from a
// peer over loopback TLS into a fresh store (hashing, sparse writing and
// the tree read out included): MB/s is the figure.
//
//	go test -run XXX -bench Fetch -benchtime 5x ./server/basepeer
func BenchmarkFetch(b *testing.B) {
	testenv.RequireTools(b, "mkfs.ext4", "debugfs", "e2fsck")
	p := newPKI(b)
	storeA, err := image.Open(image.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	src := b.TempDir()
	payload := make([]byte, 64<<20)
	rand.Read(payload)
	os.WriteFile(filepath.Join(src, "payload"), payload, 0o644)
	im, err := storeA.Import(context.Background(), "big", src, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { storeA.Remove("big"); storeA.GC(nil) })
	_, addr := serve(b, storeA, p.a, p.pool)
	c := NewClient(ClientTLS(p.b, p.pool))
	defer c.Close()
	b.SetBytes(im.Size)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		into, err := image.Open(image.Config{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := c.Fetch(context.Background(), addr, im.Digest, into); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		into.GC(nil)
		b.StartTimer()
	}
}
