package http

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sealroot/sealroot/test/testenv"
)

// startGuarded serves dir on 127.0.0.1 with limits and returns the address,
// the server's log and a stop function (also run at cleanup), after which
// the log holds the server's summary.
func startGuarded(t *testing.T, dir string, limits Limits) (string, *testenv.Buffer, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	h := NewHandler(dir, nil, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeWith(ctx, ln, h, logger, limits) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ServeWith: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), logs, stop
}

// dialFrom connects to addr from the loopback address src; rcvbuf, if not
// zero, shrinks the receive buffer before the handshake (a small window).
func dialFrom(t *testing.T, src, addr string, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends a GET for an artifact and returns the response, body unread.
func get(t *testing.T, c net.Conn, name string) (*bufio.Reader, *nethttp.Response) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+ArtifactPrefix+name+" HTTP/1.1\r\nHost: boot\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := nethttp.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("response: %v", err)
	}
	return br, resp
}

// A reader that stops reading is cut after StallTimeout without progress,
// while a slow reader that keeps taking bytes gets the whole file, though
// its download lasts many times StallTimeout.
func TestStalledReaderCutSlowReaderFinishes(t *testing.T) {
	dir := t.TempDir()
	const bigSize, slowSize = 256 << 20, 2 << 20
	big, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	big.Truncate(bigSize) // sparse: far more than any socket buffer
	big.Close()
	slow := make([]byte, slowSize)
	rand.Read(slow)
	mustWrite(t, filepath.Join(dir, "slow"), slow)
	const stall = 500 * time.Millisecond
	addr, logs, stop := startGuarded(t, dir, Limits{StallTimeout: stall})

	var wg sync.WaitGroup
	wg.Go(func() {
		c := dialFrom(t, "127.0.0.7", addr, 4096)
		br, resp := get(t, c, "big")
		if resp.StatusCode != nethttp.StatusOK {
			t.Errorf("stalled reader: status %d", resp.StatusCode)
			return
		}
		io.ReadFull(br, make([]byte, 1024))
		time.Sleep(3 * stall) // stop reading
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := io.Copy(io.Discard, br)
		if os.IsTimeout(err) {
			t.Errorf("stalled reader: connection still open 20s after its stall (%d bytes), want it cut", n)
		} else if n+1024 >= bigSize {
			t.Errorf("stalled reader got all %d bytes, want the download cut", n+1024)
		}
	})
	wg.Go(func() {
		c := dialFrom(t, "127.0.0.8", addr, 0)
		br, resp := get(t, c, "slow")
		start := time.Now()
		var got []byte
		buf := make([]byte, 64<<10)
		for len(got) < slowSize {
			n, err := io.ReadFull(br, buf[:min(len(buf), slowSize-len(got))])
			got = append(got, buf[:n]...)
			if err != nil {
				t.Errorf("slow reader: after %d of %d bytes: %v", len(got), slowSize, err)
				return
			}
			time.Sleep(stall / 4)
		}
		if d := time.Since(start); d < 4*stall {
			t.Errorf("slow reader took %v, want a download slower than 4x the stall timeout", d)
		}
		if resp.StatusCode != nethttp.StatusOK || string(got) != string(slow) {
			t.Errorf("slow reader: status %d, %d bytes, want the whole file", resp.StatusCode, len(got))
		}
	})
	wg.Wait()
	stop()
	wantLog(t, logs, "stalled=1")
}

// wantLog checks the server's log for the guard's summary.
func wantLog(t *testing.T, logs *testenv.Buffer, want string) {
	t.Helper()
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

// One source holds at most ConnsPerSource connections; the next is closed
// at once, other sources are served, and a closed connection frees its
// place.
func TestConnsPerSource(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "vmlinuz"), []byte("kernel"))
	addr, logs, stop := startGuarded(t, dir, Limits{ConnsPerSource: 2})

	held := []net.Conn{dialFrom(t, "127.0.0.9", addr, 0), dialFrom(t, "127.0.0.9", addr, 0)}
	// The server accepts in order: once these answer, both are counted.
	for _, c := range held {
		if _, resp := get(t, c, "vmlinuz"); resp.StatusCode != nethttp.StatusOK {
			t.Fatalf("held connection: status %d", resp.StatusCode)
		}
	}
	third := dialFrom(t, "127.0.0.9", addr, 0)
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(third, "GET "+ArtifactPrefix+"vmlinuz HTTP/1.1\r\nHost: boot\r\n\r\n")
	if n, err := third.Read(make([]byte, 1)); os.IsTimeout(err) || n != 0 {
		t.Fatalf("third connection from one source: read %d, %v; want it closed", n, err)
	}

	if _, resp := get(t, dialFrom(t, "127.0.0.10", addr, 0), "vmlinuz"); resp.StatusCode != nethttp.StatusOK {
		t.Errorf("other source: status %d", resp.StatusCode)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dialFrom(t, "127.0.0.9", addr, 0)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET "+ArtifactPrefix+"vmlinuz HTTP/1.1\r\nHost: boot\r\n\r\n")
		resp, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == nethttp.StatusOK {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection did not free its place: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	// The third connection, and any retry above that came before the
	// server saw the close.
	wantLog(t, logs, "connections refused or cut: refused=")
	if strings.Contains(logs.String(), "refused=0 ") {
		t.Errorf("log counts no refusal:\n%s", logs.String())
	}
}
