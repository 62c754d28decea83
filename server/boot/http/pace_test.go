package http

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/boot/pace"
	"github.com/sealroot/sealroot/server/boot/pace/pacetest"
)

// TestRateCap downloads an artifact with a real HTTP client from a handler
// capped at 256 KiB/s on a fake clock: the body is whole and the download
// took the time the cap implies (the clock records it; nothing waits). A
// range request is paced for its range only; scripts are not paced.
func TestRateCap(t *testing.T) {
	const size, rate = 2 << 20, 256 << 10
	dir := t.TempDir()
	content := make([]byte, size)
	rand.Read(content)
	if err := os.WriteFile(filepath.Join(dir, "uki.efi"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	clock := pacetest.NewFakeClock()
	scripts := func(context.Context, ScriptRequest) ([]byte, error) { return []byte("#!ipxe\n"), nil }
	srv := httptest.NewServer(NewHandler(dir, scripts, nil, WithRateCap(rate, clock)))
	defer srv.Close()
	burst := max(rate/10, pace.MinBurst)

	get := func(path string, hdr map[string]string) []byte {
		t.Helper()
		req, _ := nethttp.NewRequest(nethttp.MethodGet, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	check := func(what string, n int, before time.Duration) {
		t.Helper()
		// The first burst passes at once; the last read's debt is not
		// paid when the server stops reading at the range's end.
		lo := time.Duration(float64(max(n-2*burst, 0)) / rate * float64(time.Second))
		hi := time.Duration(float64(max(n-burst, 0)) / rate * float64(time.Second))
		if got := clock.Slept() - before; got < lo-time.Millisecond || got > hi+time.Millisecond {
			t.Errorf("%s: %d bytes paced for %v, want %v to %v at %d B/s", what, n, got, lo, hi, rate)
		}
	}

	if got := get(ArtifactPrefix+"uki.efi", nil); !bytes.Equal(got, content) {
		t.Fatalf("downloaded %d bytes, want the %d of the artifact", len(got), size)
	}
	check("whole artifact", size, 0)
	t.Logf("%d bytes paced for %v", size, clock.Slept())

	before := clock.Slept()
	if got := get(ArtifactPrefix+"uki.efi", map[string]string{"Range": "bytes=1048576-"}); !bytes.Equal(got, content[1<<20:]) {
		t.Fatalf("range: %d bytes", len(got))
	}
	check("range", size-1<<20, before)

	before = clock.Slept()
	get(ScriptPath, nil)
	if clock.Slept() != before {
		t.Errorf("script paced for %v", clock.Slept()-before)
	}
}

// TestRateCap_off: without WithRateCap nothing is paced (the default).
func TestRateCap_off(t *testing.T) {
	h := NewHandler(t.TempDir(), nil, nil).(*handler)
	if h.rate != 0 {
		t.Fatalf("rate %d without WithRateCap", h.rate)
	}
}
