// Package servestats counts what a boot service served: requests by
// result and bytes sent and received. Results are fixed strings from the
// services' code (never a client's name, address or file), so metrics
// labels built from them stay bounded.
package servestats

import (
	"io"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// Counter counts one service. The zero value is ready; it is safe for
// concurrent use, and a nil *Counter counts nothing.
type Counter struct {
	sent, received atomic.Uint64

	mu       sync.Mutex        // guards requests
	requests map[string]uint64 // by result
}

// Request counts one request with result.
func (c *Counter) Request(result string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.requests == nil {
		c.requests = make(map[string]uint64)
	}
	c.requests[result]++
}

// Sent counts n bytes sent.
func (c *Counter) Sent(n int) {
	if c != nil && n > 0 {
		c.sent.Add(uint64(n))
	}
}

// Received counts n bytes received.
func (c *Counter) Received(n int) {
	if c != nil && n > 0 {
		c.received.Add(uint64(n))
	}
}

// Snapshot is a Counter's values at one time.
type Snapshot struct {
	Requests      map[string]uint64 // by result
	SentBytes     uint64
	ReceivedBytes uint64
}

// Snapshot returns the counts so far.
func (c *Counter) Snapshot() Snapshot {
	if c == nil {
		return Snapshot{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return Snapshot{Requests: maps.Clone(c.requests), SentBytes: c.sent.Load(), ReceivedBytes: c.received.Load()}
}

// Handler counts h's requests by status class ("2xx", "4xx", ...) and
// the response bytes it writes.
func Handler(c *Counter, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(cw, r)
		c.Request(strconv.Itoa(cw.status/100) + "xx")
		c.Sent(cw.n)
	})
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int
	wrote  bool
}

func (w *countingWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(p)
	w.n += n
	return n, err
}

// ReadFrom keeps the sendfile path of http.ServeContent, counting what
// it sent.
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wrote = true
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += int(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
