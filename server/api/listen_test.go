package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
)

func TestListenModes(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "new", "admin.sock")
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tt := range []struct {
		path string
		want fs.FileMode
	}{
		{filepath.Dir(path), fs.ModeDir | 0o700},
		{path, fs.ModeSocket | 0o600},
	} {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tt.want {
			t.Errorf("mode of %s = %v, want %v", tt.path, fi.Mode(), tt.want)
		}
	}
}

func TestListenExisting(t *testing.T) {
	t.Run("stale_socket_removed", func(t *testing.T) {
		path := shortTempDir(t) + "/admin.sock"
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false)
		old.Close() // leaves the socket file behind, nobody listening
		ln, err := api.Listen(path)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		ln.Close()
	})
	t.Run("live_socket_kept", func(t *testing.T) {
		path := shortTempDir(t) + "/admin.sock"
		live, err := api.Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		if _, err := api.Listen(path); !errors.Is(err, api.ErrSocketInUse) {
			t.Fatalf("Listen over a live socket = %v, want ErrSocketInUse", err)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("the live socket no longer answers: %v", err)
		}
		c.Close()
	})
	t.Run("regular_file_kept", func(t *testing.T) {
		path := shortTempDir(t) + "/admin.sock"
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := api.Listen(path)
		if err == nil || !strings.Contains(err.Error(), "is not a socket") {
			t.Fatalf("Listen over a regular file = %v, want a not-a-socket error", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "precious" {
			t.Errorf("file content = %q, want it untouched", b)
		}
	})
}

func TestPeerCheck(t *testing.T) {
	t.Run("root_passes", func(t *testing.T) {
		testenv.RequireRoot(t, "checks the peer credentials of root")
		_, c, _ := newTestClient(t)
		if _, err := c.Machines(context.Background()); err != nil {
			t.Fatalf("Machines as root: %v", err)
		}
	})
	t.Run("no_peer_credentials_refused", func(t *testing.T) {
		h := api.NewHandler(apitest.NewService(t, testMachines()...), nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/machines", nil))
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `"code":"forbidden"`) {
			t.Errorf("without api.Server: %d %s, want 403 forbidden", rec.Code, rec.Body)
		}
	})
	t.Run("other_uid_refused", testOtherUIDRefused)
}

// testOtherUIDRefused loosens the socket's file modes, as a mistaken
// operator might, and checks that a process running as nobody is still
// refused by the SO_PEERCRED check.
func testOtherUIDRefused(t *testing.T) {
	testenv.RequireRoot(t, "runs a peer as another uid")
	_, _, path := newTestClient(t)
	for _, p := range []string{path, filepath.Dir(path), filepath.Dir(filepath.Dir(path))} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(filepath.Dir(path), "api.test")
	if err := copyFile(exe, os.Args[0]); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestPeerHelper$")
	cmd.Env = append(os.Environ(), "SEALROOT_API_PEER_HELPER="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "status=403 ") || !strings.Contains(string(out), "uid 65534 may not use the admin API") {
		t.Errorf("peer helper as uid 65534 got:\n%s\nwant a 403 naming uid 65534", out)
	}
}

// TestPeerHelper is the peer process of testOtherUIDRefused.
func TestPeerHelper(t *testing.T) {
	path := os.Getenv("SEALROOT_API_PEER_HELPER")
	if path == "" {
		t.Skip("helper process for TestPeerCheck")
	}
	resp, err := unixHTTPClient(path).Get("http://sealroot/v1/machines")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("uid=%d status=%d body=%s\n", os.Getuid(), resp.StatusCode, body)
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
