package api

import (
	"context"
	"io"
	"net/http"
)

// BackupFunc writes a backup of the server's state (package backup),
// with the machines' roots when withRoots.
type BackupFunc func(ctx context.Context, w io.Writer, withRoots bool) error

// WithBackup serves GET /v1/backup[?roots=1]: the backup as
// application/gzip, streamed as it is written, so that nothing the size
// of the roots is staged on the server. A failure before the first byte
// is answered as an error; a failure after it aborts the response, which
// the client reads as a truncated body (an error), never as a backup.
func WithBackup(fn BackupFunc) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/backup", func(w http.ResponseWriter, r *http.Request) {
			sw := &startedWriter{w: w}
			err := fn(r.Context(), sw, r.URL.Query().Get("roots") == "1")
			switch {
			case err == nil:
			case !sw.started:
				h.reply(w, r, nil, err)
			default:
				h.log.Error("backup failed while streaming; response aborted", "error", err)
				panic(http.ErrAbortHandler)
			}
		})
	}
}

// startedWriter is a response that becomes a gzip stream at its first
// byte.
type startedWriter struct {
	w       http.ResponseWriter
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/gzip")
	}
	return s.w.Write(p)
}
