package coninput

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestLinesStopInterruptsReaders: stop ends the blocked reads without
// closing the inputs, which can be read again afterwards (the login
// that follows a menu reads the same consoles).
func TestLinesStopInterruptsReaders(t *testing.T) {
	r1, w1 := pipe(t)
	r2, w2 := pipe(t) // not written until stop: its reader blocks
	lines, stop := Lines(r1, r2)
	w1.WriteString("1\n")
	if got := <-lines; got != "1" {
		t.Fatalf("line = %q", got)
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not end a blocked read")
	}
	stop() // safe twice
	if _, ok := <-lines; ok {
		t.Fatal("lines open after stop")
	}
	w2.WriteString("after\n")
	b := make([]byte, 6)
	if n, err := r2.Read(b); err != nil || string(b[:n]) != "after\n" {
		t.Fatalf("read after stop = %q, %v; want the input usable again", b[:n], err)
	}
}

func TestLinesFromEveryInput(t *testing.T) {
	r1, w1 := pipe(t)
	r2, w2 := pipe(t)
	lines, stop := Lines(r1, r2)
	defer stop()
	w2.WriteString("from serial\n")
	if got := <-lines; got != "from serial" {
		t.Fatalf("line = %q", got)
	}
	w1.WriteString("from screen\n")
	if got := <-lines; got != "from screen" {
		t.Fatalf("line = %q", got)
	}
}

func TestOpen(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(sys, "class/tty/console"), 0o755)
	os.WriteFile(filepath.Join(sys, "class/tty/console/active"), []byte("tty0 ttyS0 ttyS1\n"), 0o644)
	for _, n := range []string{"tty0", "ttyS0"} { // ttyS1 does not open
		os.WriteFile(filepath.Join(dev, n), nil, 0o644)
	}
	files, err := Open(sys, dev)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(files)
	if len(files) != 2 || filepath.Base(files[0].Name()) != "tty0" || filepath.Base(files[1].Name()) != "ttyS0" {
		t.Fatalf("Open = %v, want tty0 and ttyS0", files)
	}
	if err := SetEcho(files[0], false); err != nil {
		t.Errorf("SetEcho on no terminal = %v, want nil (nothing echoes)", err)
	}
	os.WriteFile(filepath.Join(sys, "class/tty/console/active"), []byte("ttyS9\n"), 0o644)
	if _, err := Open(sys, dev); err == nil {
		t.Error("Open with no console that opens succeeded")
	}
}
