package http

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	nethttp "net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sealroot/sealroot/ipxe"
	"github.com/sealroot/sealroot/server/boot/pace"
)

func (h *handler) serveArtifact(w nethttp.ResponseWriter, r *nethttp.Request, name string) {
	// Shim fetching its second stage by HTTP boot asks for
	// /artifacts//grubx64.efi (its loader name starts with a backslash).
	name = strings.TrimLeft(name, "/")
	if err := ipxe.CheckName(name); err != nil {
		nethttp.NotFound(w, r)
		return
	}
	f, err := os.OpenInRoot(h.dir, name)
	if err != nil {
		h.notFoundOrError(w, r, name, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		nethttp.NotFound(w, r)
		return
	}
	etag, err := h.etags.get(name, f, fi)
	if err != nil {
		h.logger.Error("hashing artifact failed", "name", name, "error", err)
		nethttp.Error(w, "internal error", nethttp.StatusInternalServerError)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/octet-stream")
	var content io.ReadSeeker = f
	if h.rate > 0 {
		content = pace.NewReadSeeker(r.Context(), f, h.rate, h.clock)
	}
	nethttp.ServeContent(w, r, "", fi.ModTime(), content)
}

// notFoundOrError answers 404 for any open failure, so that clients learn
// nothing about the directory; failures other than a missing file (a
// symlink escaping the root, permissions) are logged.
func (h *handler) notFoundOrError(w nethttp.ResponseWriter, r *nethttp.Request, name string, err error) {
	if !errors.Is(err, fs.ErrNotExist) {
		h.logger.Warn("refused artifact", "remote", r.RemoteAddr, "name", name, "error", err)
	}
	nethttp.NotFound(w, r)
}

// etagCache maps a file version to the strong ETag of its contents.
type etagCache struct {
	mu      sync.Mutex
	entries map[string]etagEntry // guarded by mu; one entry per name
}

type etagEntry struct {
	size  int64
	mtime time.Time
	etag  string
}

func newETagCache() *etagCache {
	return &etagCache{entries: make(map[string]etagEntry)}
}

// get returns the ETag for f, whose stat result is fi, hashing it when the
// cached version differs. It rewinds f. A file that changes while being
// hashed is hashed again on the next request rather than cached.
func (c *etagCache) get(name string, f *os.File, fi fs.FileInfo) (string, error) {
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && e.size == fi.Size() && e.mtime.Equal(fi.ModTime()) {
		return e.etag, nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("rewinding %s: %w", name, err)
	}
	etag := `"sha256-` + hex.EncodeToString(sum.Sum(nil)) + `"`
	after, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", name, err)
	}
	if after.Size() == fi.Size() && after.ModTime().Equal(fi.ModTime()) {
		c.mu.Lock()
		c.entries[name] = etagEntry{size: fi.Size(), mtime: fi.ModTime(), etag: etag}
		c.mu.Unlock()
	}
	return etag, nil
}

// logWriter records the status code and body bytes for the request log.
// It forwards io.ReaderFrom so that ServeContent keeps the sendfile path.
type logWriter struct {
	nethttp.ResponseWriter
	status int
	n      int64
}

func (w *logWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = nethttp.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *logWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = nethttp.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *logWriter) Unwrap() nethttp.ResponseWriter { return w.ResponseWriter }

func (w *logWriter) statusCode() int {
	if w.status == 0 {
		return nethttp.StatusOK
	}
	return w.status
}
