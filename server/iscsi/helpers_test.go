package iscsi

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
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
		srv.Logger = hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Info})
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

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// needTool skips (or, with CI=true, fails) when a binary is missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (Debian libiscsi-bin)", name)
		}
		t.Skipf("%s not installed (Debian libiscsi-bin)", name)
	}
	return p
}
