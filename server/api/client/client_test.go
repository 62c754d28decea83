package client_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/store"
)

func TestUnreachable(t *testing.T) {
	dir, err := os.MkdirTemp("", "sealroot-client")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	tests := []struct {
		name    string
		path    string
		wantErr error
	}{
		{"missing_socket", filepath.Join(dir, "missing.sock"), fs.ErrNotExist},
		{"stale_socket", stale, syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.New(tt.path).Machine(context.Background(), "x")
			want := `cannot reach sealroot at ` + tt.path + `: is "sealroot serve" running?`
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v, want %q", err, want)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err does not unwrap to %v", tt.wantErr)
			}
		})
	}
}

func TestErrorsKeepSentinels(t *testing.T) {
	svc := apitest.NewService(t, &store.Machine{
		ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", State: store.StateRevoked,
	})
	c := client.New(apitest.Serve(t, svc))
	_, err := c.Approve(context.Background(), "01234567", api.ApproveOptions{})
	var apiErr *api.Error
	if !errors.Is(err, api.ErrConflict) || !errors.As(err, &apiErr) || apiErr.Code != api.CodeConflict {
		t.Fatalf("Approve(revoked) = %#v, want *api.Error unwrapping to ErrConflict", err)
	}
	if errors.Is(err, api.ErrAmbiguous) {
		t.Error("a conflict also matches ErrAmbiguous, though both are 409")
	}
}
