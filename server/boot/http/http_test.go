package http

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/ipxe"
)

type fixture struct {
	dir     string
	srv     *httptest.Server
	logs    *testenv.Buffer
	content []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "artifacts")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	mustWrite(t, filepath.Join(dir, "vmlinuz"), content)
	mustWrite(t, filepath.Join(dir, ".hidden"), []byte("hidden"))
	mustWrite(t, filepath.Join(root, "secret"), []byte("outside the artifact dir"))
	if err := os.Symlink(filepath.Join(root, "secret"), filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(dir, "escape-rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("vmlinuz", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, JSONFormat: true, Level: hclog.Debug})
	scripts := func(ctx context.Context, r ScriptRequest) ([]byte, error) {
		if !r.Remote.Addr().IsLoopback() {
			return nil, fmt.Errorf("unexpected remote %v", r.Remote)
		}
		return []byte("#!ipxe\necho " + string(r.Arch) + "\n"), nil
	}
	srv := httptest.NewServer(NewHandler(dir, scripts, logger))
	t.Cleanup(srv.Close)
	return &fixture{dir: dir, srv: srv, logs: logs, content: content}
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) do(t *testing.T, method, path string, hdr map[string]string) (*nethttp.Response, []byte) {
	t.Helper()
	req, err := nethttp.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestScript(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantBody           string
	}{
		{"get_bios", "GET", "/boot.ipxe?arch=bios", 200, "#!ipxe\necho bios\n"},
		{"get_efi", "GET", "/boot.ipxe?arch=efi-x64", 200, "#!ipxe\necho efi-x64\n"},
		{"head_efi", "HEAD", "/boot.ipxe?arch=efi-x64", 200, ""},
		{"unknown_arch", "GET", "/boot.ipxe?arch=arm64", 400, "unsupported arch\n"},
		{"missing_arch", "GET", "/boot.ipxe", 400, "unsupported arch\n"},
		{"post", "POST", "/boot.ipxe?arch=bios", 405, "method not allowed\n"},
		{"unknown_path", "GET", "/v1/boot/aa:bb", 404, "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path, nil)
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	resp, _ := f.do(t, "HEAD", "/boot.ipxe?arch=bios", nil)
	if resp.ContentLength != int64(len("#!ipxe\necho bios\n")) || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("HEAD script: Content-Length %d, Cache-Control %q", resp.ContentLength, resp.Header.Get("Cache-Control"))
	}
}

func TestScriptCallbackError(t *testing.T) {
	h := NewHandler(t.TempDir(), func(context.Context, ScriptRequest) ([]byte, error) {
		return nil, errors.New("store down")
	}, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boot.ipxe?arch=bios", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "store down") {
		t.Errorf("callback error: %d %q, want 500 without internals", rec.Code, rec.Body.String())
	}
}

func TestArtifact(t *testing.T) {
	f := newFixture(t)
	sum := sha256.Sum256(f.content)
	wantETag := `"sha256-` + hex.EncodeToString(sum[:]) + `"`

	resp, body := f.do(t, "GET", "/artifacts/vmlinuz", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, f.content) {
		t.Fatalf("GET = %d, %d bytes; want 200, %d bytes", resp.StatusCode, len(body), len(f.content))
	}
	if got := resp.Header.Get("ETag"); got != wantETag {
		t.Errorf("ETag = %s, want %s", got, wantETag)
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("Accept-Ranges = %q, want bytes", resp.Header.Get("Accept-Ranges"))
	}

	// Shim's HTTP boot asks for its second stage as /artifacts//grubx64.efi.
	t.Run("leading_slash_as_shim_asks", func(t *testing.T) {
		resp, body := f.do(t, "GET", "/artifacts//vmlinuz", nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, f.content) {
			t.Errorf("GET //vmlinuz = %d, %d bytes; want 200, %d bytes", resp.StatusCode, len(body), len(f.content))
		}
	})

	t.Run("range_206", func(t *testing.T) {
		resp, body := f.do(t, "GET", "/artifacts/vmlinuz", map[string]string{"Range": "bytes=100-199"})
		if resp.StatusCode != 206 || !bytes.Equal(body, f.content[100:200]) {
			t.Errorf("Range = %d %q, want 206 %q", resp.StatusCode, body, f.content[100:200])
		}
		if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 100-199/%d", len(f.content)) {
			t.Errorf("Content-Range = %q", cr)
		}
	})
	t.Run("if_none_match_304", func(t *testing.T) {
		resp, body := f.do(t, "GET", "/artifacts/vmlinuz", map[string]string{"If-None-Match": wantETag})
		if resp.StatusCode != 304 || len(body) != 0 {
			t.Errorf("If-None-Match = %d, %d bytes; want 304, empty", resp.StatusCode, len(body))
		}
	})
	t.Run("if_none_match_stale_200", func(t *testing.T) {
		resp, _ := f.do(t, "GET", "/artifacts/vmlinuz", map[string]string{"If-None-Match": `"sha256-00"`})
		if resp.StatusCode != 200 {
			t.Errorf("stale If-None-Match = %d, want 200", resp.StatusCode)
		}
	})
	t.Run("if_range_mismatch_full", func(t *testing.T) {
		resp, body := f.do(t, "GET", "/artifacts/vmlinuz", map[string]string{"Range": "bytes=0-9", "If-Range": `"sha256-00"`})
		if resp.StatusCode != 200 || len(body) != len(f.content) {
			t.Errorf("If-Range mismatch = %d, %d bytes; want 200 full", resp.StatusCode, len(body))
		}
	})
	t.Run("head", func(t *testing.T) {
		resp, body := f.do(t, "HEAD", "/artifacts/vmlinuz", nil)
		if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(f.content)) {
			t.Errorf("HEAD = %d, body %d, length %d", resp.StatusCode, len(body), resp.ContentLength)
		}
		if resp.Header.Get("ETag") != wantETag {
			t.Errorf("HEAD ETag = %q", resp.Header.Get("ETag"))
		}
	})
	t.Run("symlink_inside_dir", func(t *testing.T) {
		resp, body := f.do(t, "GET", "/artifacts/alias", nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, f.content) {
			t.Errorf("alias = %d", resp.StatusCode)
		}
	})
}

func TestArtifactETagFollowsNewVersion(t *testing.T) {
	f := newFixture(t)
	resp1, _ := f.do(t, "GET", "/artifacts/vmlinuz", nil)
	newContent := []byte("a new kernel")
	mustWrite(t, filepath.Join(f.dir, "vmlinuz"), newContent)
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(f.dir, "vmlinuz"), future, future); err != nil {
		t.Fatal(err)
	}
	resp2, body := f.do(t, "GET", "/artifacts/vmlinuz", nil)
	sum := sha256.Sum256(newContent)
	want := `"sha256-` + hex.EncodeToString(sum[:]) + `"`
	if !bytes.Equal(body, newContent) || resp2.Header.Get("ETag") != want || resp1.Header.Get("ETag") == want {
		t.Errorf("after replace: ETag %s (before %s), want %s", resp2.Header.Get("ETag"), resp1.Header.Get("ETag"), want)
	}
}

// TestArtifactTraversalRefused sends raw request lines so that no client
// library cleans the path first.
func TestArtifactTraversalRefused(t *testing.T) {
	f := newFixture(t)
	paths := []string{
		"/artifacts/../secret",
		"/artifacts/%2e%2e/secret",
		"/artifacts/%2E%2E%2Fsecret",
		"/artifacts/..%2fsecret",
		"/artifacts//etc/passwd",
		"/artifacts/%2fetc%2fpasswd",
		"/artifacts/subdir/../vmlinuz",
		"/artifacts/escape",
		"/artifacts/escape-rel",
		"/artifacts/subdir",
		"/artifacts/.hidden",
		"/artifacts/vmlinuz%00",
		"/artifacts/",
		"/artifacts/..",
	}
	for _, p := range paths {
		status, body := rawGet(t, f.srv.Listener.Addr().String(), p)
		if status != 404 && status != 400 {
			t.Errorf("GET %s = %d, want 404 or 400", p, status)
		}
		if strings.Contains(body, "outside the artifact dir") || strings.Contains(body, "root:") {
			t.Errorf("GET %s leaked file content", p)
		}
	}
	if !strings.Contains(f.logs.String(), `"refused artifact"`) {
		t.Errorf("escaping symlink was not logged:\n%s", f.logs)
	}
}

func rawGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	resp, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRequestLogFields(t *testing.T) {
	f := newFixture(t)
	f.do(t, "GET", "/artifacts/vmlinuz", map[string]string{"Range": "bytes=0-9"})
	f.do(t, "GET", "/artifacts/vmlinuz", nil)
	// The handler logs after the response is complete: wait for both lines.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(f.logs.String(), `"@message":"request"`) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := f.logs.String()
	for _, want := range []string{`"bytes":65536`, `"@module":"boothttp"`, `"path":"/artifacts/vmlinuz"`, `"status":206`, `"bytes":10`, `"remote":"127.0.0.1:`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "k"), []byte("kernel"))
	h := NewHandler(dir, func(ctx context.Context, r ScriptRequest) ([]byte, error) {
		return ipxe.Render(ipxe.Params{BaseURL: "http://" + ln.Addr().String() + "/artifacts", Arch: r.Arch, Kernel: "k"})
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, nil) }()

	resp, err := nethttp.Get("http://" + ln.Addr().String() + "/boot.ipxe?arch=bios")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "kernel http://"+ln.Addr().String()+"/artifacts/k") {
		t.Errorf("script = %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Errorf("listener still accepting after shutdown")
	}
}
