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
// (a serial port with nothing attached) is skipped for that write.
type Writer struct {
	mu    sync.Mutex
	files []*os.File
}

// Open opens every active console under dev (usually "/dev"),
// non-blocking. It fails only when none opens.
func Open(sys, dev string) (*Writer, error) {
	names, err := Active(sys)
	if err != nil {
		return nil, err
	}
	w := &Writer{}
	var errs []error
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join(dev, n), os.O_WRONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w.files = append(w.files, f)
	}
	if len(w.files) == 0 {
		return nil, fmt.Errorf("console: none of %v opens: %w", names, errors.Join(errs...))
	}
	return w, nil
}

// Names are the consoles w writes to.
func (w *Writer) Names() []string {
	var names []string
	for _, f := range w.files {
		names = append(names, filepath.Base(f.Name()))
	}
	return names
}

// Write writes p to every console; it fails only when every console did.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, f := range w.files {
		if _, err := f.Write(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(w.files) {
		return 0, errors.Join(errs...)
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
	w.files = nil
	return errors.Join(errs...)
}
