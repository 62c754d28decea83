package http

import (
	"context"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkArtifact downloads a 64 MiB artifact over loopback (ETag cached
// after the first request), reporting throughput.
func BenchmarkArtifact(b *testing.B) {
	dir := b.TempDir()
	const size = 64 << 20
	if err := os.WriteFile(filepath.Join(dir, "initrd"), make([]byte, size), 0o644); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(dir, func(context.Context, ScriptRequest) ([]byte, error) { return nil, nil }, nil))
	defer srv.Close()
	b.SetBytes(size)
	for b.Loop() {
		resp, err := nethttp.Get(srv.URL + "/artifacts/initrd")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("got %d bytes, %v", n, err)
		}
	}
}
