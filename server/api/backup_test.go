package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/test/testenv"
)

// serveBackup serves the API with fn as its backup.
func serveBackup(t *testing.T, fn api.BackupFunc) *client.Client {
	t.Helper()
	path := shortTempDir(t) + "/admin.sock"
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := testenv.Logger(t, "", 0)
	srv := &api.Server{Handler: api.NewHandler(apitest.NewService(t), logger, api.WithBackup(fn)), Logger: logger}
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return client.New(path)
}

// The backup streams: a failure before its first byte is an error
// answer; one after it, midway through a body larger than any buffer,
// is an error at the client too, never a shorter backup.
func TestBackupStreams(t *testing.T) {
	big := bytes.Repeat([]byte("root data "), 1<<20) // 10 MiB
	tests := []struct {
		name    string
		fn      api.BackupFunc
		want    int    // bytes the client gets
		wantErr string // "" for success
	}{
		{"whole", func(_ context.Context, w io.Writer, _ bool) error { _, err := w.Write(big); return err }, len(big), ""},
		{"fails_first", func(context.Context, io.Writer, bool) error { return errors.New("copy store: disk on fire") }, 0, "disk on fire"},
		{"fails_midway", func(_ context.Context, w io.Writer, _ bool) error {
			w.Write(big)
			return errors.New("read root: I/O error")
		}, -1, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bytes.Buffer
			err := serveBackup(t, tt.fn).Backup(context.Background(), &got, true)
			if tt.wantErr == "" {
				if err != nil || got.Len() != tt.want {
					t.Fatalf("Backup = %v, %d bytes; want nil, %d", err, got.Len(), tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Backup = %v (%d bytes), want an error with %q", err, got.Len(), tt.wantErr)
			}
		})
	}
}
