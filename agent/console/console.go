// Package console writes the agent's status lines to every active kernel
// console, not only /dev/console (which is the last console= of the
// command line). With "console=ttyS0 console=tty0" the approval
// fingerprint shows on the screen of a NUC and on the serial line of a
// server alike.
package console

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Active returns the names of the active consoles ("tty0", "ttyS0") as
// sysfs mounted at sys lists them.
func Active(sys string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(sys, "class/tty/console/active"))
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	var names []string
	for _, n := range strings.Fields(string(b)) {
		if n != "" && !strings.ContainsAny(n, "/.") {
			names = append(names, n)
		}
	}
	return names, nil
}

// Writer writes to several consoles; a console that fails or would block
// (a serial port with nothing attached) is skipped for that write. It
// rereads the active list before each write, so a console registered
// later (hvc0 once virtio_console loads, a USB serial port) gets the
// lines from then on.
type Writer struct {
	sys, dev string

	mu     sync.Mutex // guards the fields below
	active string     // the active list the files were opened for
	files  map[string]*os.File
}

// Open opens every active console under dev (usually "/dev"),
// non-blocking. It fails only when none opens.
func Open(sys, dev string) (*Writer, error) {
	w := &Writer{sys: sys, dev: dev, files: map[string]*os.File{}}
	if err := w.refreshLocked(); err != nil {
		return nil, err
	}
	if len(w.files) == 0 {
		return nil, fmt.Errorf("console: none of the active consoles (%s) opens", strings.TrimSpace(w.active))
	}
	return w, nil
}

// refreshLocked opens consoles that became active; consoles that left
// the list stay open (writing to them is harmless).
func (w *Writer) refreshLocked() error {
	b, err := os.ReadFile(filepath.Join(w.sys, "class/tty/console/active"))
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if string(b) == w.active {
		return nil
	}
	w.active = string(b)
	names, _ := Active(w.sys)
	for _, n := range names {
		if w.files[n] != nil {
			continue
		}
		f, err := os.OpenFile(filepath.Join(w.dev, n), os.O_WRONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
		if err == nil {
			w.files[n] = f
		}
	}
	return nil
}

// Names are the consoles w writes to, sorted.
func (w *Writer) Names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.files))
	for n := range w.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Write writes p to every console; it fails only when every console did.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refreshLocked() // a failed reread keeps the consoles already open
	var errs []error
	for _, f := range w.files {
		if _, err := f.Write(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(w.files) {
		return 0, fmt.Errorf("console: %w", errors.Join(errs...))
	}
	return len(p), nil
}

// Close closes every console.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, f := range w.files {
		errs = append(errs, f.Close())
	}
	w.files = map[string]*os.File{}
	return errors.Join(errs...)
}
