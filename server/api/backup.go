package api

import (
	"context"
	"io"
	"net/http"
	"os"
)

// BackupFunc writes a backup of the server's state (package backup),
// with the machines' roots when withRoots.
type BackupFunc func(ctx context.Context, w io.Writer, withRoots bool) error

// WithBackup serves GET /v1/backup[?roots=1]: the backup as
// application/gzip. It is written to a temporary file first, so that a
// failure is answered as an error, never as a truncated backup.
func WithBackup(fn BackupFunc) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/backup", func(w http.ResponseWriter, r *http.Request) {
			f, err := os.CreateTemp("", "sealroot-backup-")
			if err != nil {
				h.reply(w, r, nil, err)
				return
			}
			defer os.Remove(f.Name())
			defer f.Close()
			if err := fn(r.Context(), f, r.URL.Query().Get("roots") == "1"); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			w.Header().Set("Content-Type", "application/gzip")
			io.Copy(w, f)
		})
	}
}
