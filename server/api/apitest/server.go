package apitest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/test/testenv"
)

// Serve serves svc on a fresh Unix socket through api.Server and returns
// the socket path; the server stops at the end of the test. The socket
// lives in a short temporary directory (sun_path holds 108 bytes).
func Serve(t testing.TB, svc api.Service, opts ...api.Option) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sealroot-api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "run", "admin.sock")
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatalf("api.Listen: %v", err)
	}
	logger := testenv.Logger(t, "api", hclog.Debug)
	srv := &api.Server{Handler: api.NewHandler(svc, logger, opts...), Logger: logger}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Server.Serve: %v", err)
		}
	})
	return path
}
