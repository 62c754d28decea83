package servestats

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Handler counts by status class and counts the bytes http.ServeContent
// sends through ReadFrom (the sendfile path) as well as plain writes.
func TestHandlerCounts(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte(strings.Repeat("x", 5000)), 0o644)
	var c Counter
	srv := httptest.NewServer(Handler(&c, http.FileServer(http.Dir(dir))))
	defer srv.Close()
	for _, path := range []string{"/f", "/missing"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	s := c.Snapshot()
	if s.Requests["2xx"] != 1 || s.Requests["4xx"] != 1 || s.SentBytes < 5000 {
		t.Errorf("Snapshot() = %+v, want one 2xx, one 4xx, at least 5000 bytes", s)
	}
}

// A nil Counter counts nothing and does not panic: services without
// statistics pass nil.
func TestNilCounter(t *testing.T) {
	var c *Counter
	c.Request("ok")
	c.Sent(1)
	c.Received(1)
	if s := c.Snapshot(); s.Requests != nil || s.SentBytes != 0 {
		t.Errorf("nil Snapshot() = %+v", s)
	}
}
