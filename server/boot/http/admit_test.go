package http

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/admission"
	"github.com/sealroot/sealroot/server/boot/pace/pacetest"
	"github.com/sealroot/sealroot/test/testenv"
)

// startAdmitting serves dir and a script reporting its RetryPause on
// 127.0.0.1 with limits; it returns the address, the log and a stop
// function (also run at cleanup).
func startAdmitting(t *testing.T, dir string, limits Limits, opts ...ServeOption) (string, *testenv.Buffer, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	scripts := func(_ context.Context, r ScriptRequest) ([]byte, error) {
		return fmt.Appendf(nil, "pause %d", r.RetryPause.Milliseconds()), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeWith(ctx, ln, NewHandler(dir, scripts, logger), logger, limits, opts...) }()
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

// getFrom fetches path over a new connection from the loopback address
// src and returns the status, the Retry-After header and the body.
func getFrom(t *testing.T, src, addr, path string) (int, string, []byte) {
	t.Helper()
	c := dialFrom(t, src, addr, 0)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tr := &nethttp.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return c, nil }}
	defer tr.CloseIdleConnections()
	resp, err := (&nethttp.Client{Transport: tr}).Get("http://boot" + path)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, src, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s from %s: body: %v", path, src, err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), body
}

// bigAndSmall returns a directory of two boot files: "big", a sparse
// 256 MiB file (far more than any socket buffer: its download holds a
// slot), and "small", 4 KiB of random bytes, returned.
func bigAndSmall(t *testing.T) (dir string, small []byte) {
	t.Helper()
	dir = t.TempDir()
	big, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	big.Truncate(256 << 20)
	big.Close()
	small = make([]byte, 4096)
	rand.Read(small)
	mustWrite(t, filepath.Join(dir, "small"), small)
	return dir, small
}

// With every download slot taken, a download is answered 503 with a
// Retry-After, scripts carry a pause booked for their client, and a
// client that waits as told gets its file once the slot is free. A
// client that ignores Retry-After gets 503 every time and never adds a
// download: the slots bound what runs.
func TestDownloadsAdmittedAtTheirPace(t *testing.T) {
	dir, small := bigAndSmall(t)
	addr, logs, stop := startAdmitting(t, dir, Limits{Downloads: 1, DownloadWait: -1})

	if code, _, body := getFrom(t, "127.0.0.9", addr, ScriptPath+"?arch=bios"); code != 200 || string(body) != "pause 0" {
		t.Fatalf("script while idle = %d %q, want 200 \"pause 0\"", code, body)
	}
	holder := dialFrom(t, "127.0.0.7", addr, 4096)
	br, resp := get(t, holder, "big") // takes the only slot and stops reading
	if resp.StatusCode != nethttp.StatusOK {
		t.Fatalf("first download: status %d", resp.StatusCode)
	}
	io.ReadFull(br, make([]byte, 1024))

	const rude = 5
	for i := range rude {
		code, after, _ := getFrom(t, "127.0.0.10", addr, ArtifactPrefix+"small")
		if n, err := strconv.Atoi(after); code != nethttp.StatusServiceUnavailable || err != nil || n < 1 {
			t.Fatalf("download %d ignoring Retry-After = %d, Retry-After %q; want 503 with whole seconds", i, code, after)
		}
	}
	code, after, body := getFrom(t, "127.0.0.9", addr, ScriptPath+"?arch=bios")
	var pause int
	if _, err := fmt.Sscanf(string(body), "pause %d", &pause); code != 200 || err != nil || pause <= 0 {
		t.Fatalf("script while busy = %d %q, want a booked pause", code, body)
	}
	code, after, _ = getFrom(t, "127.0.0.8", addr, ArtifactPrefix+"small")
	wait, err := strconv.Atoi(after)
	if code != nethttp.StatusServiceUnavailable || err != nil {
		t.Fatalf("polite download = %d, Retry-After %q; want 503 with a Retry-After", code, after)
	}
	holder.Close() // the slot frees when the server's write fails
	time.Sleep(time.Duration(wait) * time.Second)
	if code, _, body := getFrom(t, "127.0.0.8", addr, ArtifactPrefix+"small"); code != 200 || string(body) != string(small) {
		t.Fatalf("download after Retry-After = %d (%d bytes), want 200 and the file", code, len(body))
	}
	stop()
	wantLog(t, logs, fmt.Sprintf("busy=%d", rude+1))
}

// TestPauseFillingUp: a script rendered while fewer than half the
// download slots are taken keeps the script's default pause (0); from
// half, the time a slot takes to free (the pacer's hold, at least
// MinRetryAfter), not the 5 s default; when all are taken, a booked time.
func TestPauseFillingUp(t *testing.T) {
	g := newDownloadGate(nil, 4)
	for taken, want := range []string{"default", "default", "hold", "hold", "booked"} {
		for len(g.slots) < taken {
			g.slots <- struct{}{}
		}
		got := g.pause()
		switch want {
		case "default":
			if got != 0 {
				t.Errorf("%d of 4 taken: pause %v, want 0", taken, got)
			}
		case "hold":
			if h := max(g.pacer.Hold(), admission.MinRetryAfter); got != h {
				t.Errorf("%d of 4 taken: pause %v, want the hold %v", taken, got, h)
			}
		case "booked":
			if got < admission.MinRetryAfter {
				t.Errorf("4 of 4 taken: pause %v, want a booked time", got)
			}
		}
	}
}

// A machine whose kernel download was admitted gets its initrd while new
// machines are refused (it does not start over from the kernel), and the
// grant that lets it is bounded: it holds the download slot (new
// clients are refused, not added), only its own address can use it,
// once, for the initrd only, and not after GrantTTL.
func TestInitrdFollowsAdmittedKernel(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := make([]byte, 64<<10), make([]byte, 32<<10)
	rand.Read(kernel)
	rand.Read(initrd)
	mustWrite(t, filepath.Join(dir, "vmlinuz"), kernel)
	mustWrite(t, filepath.Join(dir, "initrd"), initrd)
	clock := pacetest.NewFakeClock()
	var gate *downloadGate
	addr, logs, stop := startAdmitting(t, dir, Limits{Downloads: 1, DownloadWait: -1},
		FollowedBy("vmlinuz", "initrd"), func(g *downloadGate) { g.now, gate = clock.Now, g })
	const a, b, c = "127.0.0.7", "127.0.0.8", "127.0.0.9"
	fetch := func(src, name string, want int) {
		t.Helper()
		code, _, body := getFrom(t, src, addr, ArtifactPrefix+name)
		if code != want {
			t.Fatalf("GET %s from %s = %d, want %d", name, src, code, want)
		}
		if want == nethttp.StatusOK && len(body) != map[string]int{"vmlinuz": len(kernel), "initrd": len(initrd)}[name] {
			t.Fatalf("GET %s from %s: %d bytes", name, src, len(body))
		}
	}
	// settled waits until the gate holds slots slots and grants grants:
	// a client has its whole response a moment before the handler
	// returns and frees or keeps the slot.
	settled := func(slots, grants int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			gate.mu.Lock()
			n := len(gate.grants)
			gate.mu.Unlock()
			if len(gate.slots) == slots && n == grants {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gate: %d slots and %d grants held, want %d and %d", len(gate.slots), n, slots, grants)
			}
		}
	}
	refused := 0
	fetch(a, "vmlinuz", 200) // the only slot, then a's grant
	settled(1, 1)
	fetch(b, "vmlinuz", 503) // a new machine is refused
	fetch(b, "initrd", 503)  // a's grant is not b's
	refused += 2
	fetch(a, "initrd", 200) // a goes on without fetching its kernel again
	settled(0, 0)
	fetch(c, "vmlinuz", 200) // the slot was free again: c's grant now
	settled(1, 1)
	fetch(a, "initrd", 503)  // a's grant was used once
	fetch(a, "vmlinuz", 503) // and a grant admits only what follows
	refused += 2
	clock.Advance(GrantTTL + time.Second)
	fetch(b, "vmlinuz", 200) // c's expired grant freed the slot: b's now
	settled(1, 1)
	fetch(c, "initrd", 503) // c's grant was not kept for ever
	refused++
	fetch(b, "initrd", 200)
	stop()
	wantLog(t, logs, fmt.Sprintf("busy=%d", refused))
}

// With every download slot taken, downloads wait for one instead of being
// answered 503 (a machine would pause whole seconds and try again), and
// take the slots in the order they came; past the line's bound a download
// is answered 503 at once.
func TestDownloadsWaitInLine(t *testing.T) {
	dir, small := bigAndSmall(t)
	var gate *downloadGate
	var mu sync.Mutex
	var order []string // sources, in the order their downloads began
	addr, _, _ := startAdmitting(t, dir, Limits{Downloads: 1, DownloadWait: 8 * time.Second},
		func(g *downloadGate) {
			gate = g
			next := g.next
			g.next = nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
				mu.Lock()
				order = append(order, r.RemoteAddr[:strings.LastIndexByte(r.RemoteAddr, ':')])
				mu.Unlock()
				next.ServeHTTP(w, r)
			})
		})

	holder := dialFrom(t, "127.0.0.7", addr, 4096)
	br, resp := get(t, holder, "big") // takes the only slot and stops reading
	if resp.StatusCode != nethttp.StatusOK {
		t.Fatalf("first download: status %d", resp.StatusCode)
	}
	io.ReadFull(br, make([]byte, 1024))

	waitWaiting := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); gate.waiting.Load() != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("downloads waiting = %d, want %d", gate.waiting.Load(), n)
			}
		}
	}
	line := waitingPerDownload * cap(gate.slots)
	var want []string
	var wg sync.WaitGroup
	for i := range line {
		src := fmt.Sprintf("127.0.1.%d", i+1)
		want = append(want, src)
		wg.Go(func() {
			code, _, body := getFrom(t, src, addr, ArtifactPrefix+"small")
			if code != nethttp.StatusOK || string(body) != string(small) {
				t.Errorf("download from %s in line = %d (%d bytes), want 200 and the file", src, code, len(body))
			}
		})
		waitWaiting(int64(i + 1)) // each in line before the next asks
	}
	t0 := time.Now()
	code, after, _ := getFrom(t, "127.0.0.10", addr, ArtifactPrefix+"small")
	if code != nethttp.StatusServiceUnavailable || after == "" {
		t.Errorf("download past a full line = %d, Retry-After %q; want 503 with a Retry-After", code, after)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("download past a full line answered after %v, want at once", d)
	}
	holder.Close() // the slot frees when the server's write fails
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order[1:], " "); got != strings.Join(want, " ") {
		t.Errorf("downloads served in the order %s, want the order they came: %s", got, strings.Join(want, " "))
	}
	if n := gate.busy.Load(); n != 1 {
		t.Errorf("downloads refused = %d, want 1 (past the line)", n)
	}
}
