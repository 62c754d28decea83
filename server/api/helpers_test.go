package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/api"
)

// unixHTTPClient returns a raw HTTP client dialing the socket at path.
func unixHTTPClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// shortTempDir returns a temporary directory with a path short enough
// for a socket name (sun_path holds 108 bytes).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sealroot-api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveWithLogger serves svc with logger on a new socket until the test ends.
func serveWithLogger(t *testing.T, svc api.Service, logger hclog.Logger) string {
	t.Helper()
	path := shortTempDir(t) + "/admin.sock"
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &api.Server{Handler: api.NewHandler(svc, logger), Logger: logger}
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
}
