package iscsi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/test/testenv"
)

const testIQN = "iqn.2026-01.org.sealroot:test"

// newFileStore creates a sparse backing file of size bytes.
func newFileStore(t testing.TB, size int64) *FileStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lun.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startServer serves targets on a loopback port until the test ends.
func startServer(t testing.TB, srv *Server, targets ...*Target) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = testenv.Logger(t, "", hclog.Info)
	}
	for _, tg := range targets {
		if err := srv.AddTarget(tg); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	return ln.Addr().String()
}
