// Package coninput reads what a person types on the machine's consoles,
// for the agent's questions: the boot menu (agent/menu) and the per-user
// login (agent/login). Both ask on every active kernel console (the
// screen and the serial line with "console=ttyS0 console=tty0"), and the
// first console typed on answers.
//
// Open opens those consoles for reading and writing, pollable, so that a
// blocked read ends with SetReadDeadline and no goroutine is left behind:
// an Input is any reader that can be interrupted so. Lines turns inputs
// into one stream of typed lines (the menu); agent/login reads its inputs
// itself, a prompt at a time, and interrupts the losers the same way.
// SetEcho switches a terminal's echo (off while a password is typed).
//
// Reads are interrupted, never ended by closing the files: the caller
// owns them, and closes them once (CloseAll).
package coninput

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/agent/console"
)

// Input is a console input whose blocked read can be interrupted: an
// *os.File of a terminal or a pipe.
type Input interface {
	io.Reader
	SetReadDeadline(t time.Time) error
}

// Open opens every active console (console.Active of sysfs at sys)
// under dev for reading and writing. The files are pollable: a blocked
// read can be interrupted with SetReadDeadline. It fails only when none
// opens; the caller closes them (CloseAll).
func Open(sys, dev string) ([]*os.File, error) {
	names, err := console.Active(sys)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	var errs []error
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join(dev, n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("console: none of the active consoles (%s) opens for input: %w", strings.Join(names, " "), errors.Join(errs...))
	}
	return files, nil
}

// CloseAll closes files.
func CloseAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Interrupt ends a blocked read of in, and every read until Resume.
func Interrupt(in Input) error { return in.SetReadDeadline(time.Unix(1, 0)) }

// Resume lets in be read again after Interrupt.
func Resume(in Input) error { return in.SetReadDeadline(time.Time{}) }

// maxLine bounds one line of Lines.
const maxLine = 256

// Lines reads lines from each of ins and sends them on the returned
// channel until stop is called; stop interrupts the reads, waits for the
// readers, lets ins be read again and closes the channel. A reader that
// fails just stops. stop may be called more than once.
func Lines(ins ...Input) (lines <-chan string, stop func()) {
	ch := make(chan string)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Go(func() {
			sc := bufio.NewScanner(in)
			sc.Buffer(make([]byte, maxLine), maxLine)
			for sc.Scan() {
				select {
				case ch <- sc.Text():
				case <-done:
					return
				}
			}
		})
	}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			close(done)
			for _, in := range ins {
				Interrupt(in)
			}
			wg.Wait()
			for _, in := range ins {
				Resume(in)
			}
			close(ch)
		})
	}
}

// SetEcho switches the terminal echo of f without taking f out of
// non-blocking mode (as f.Fd would); when f is no terminal there is
// nothing to switch.
func SetEcho(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			return // not a terminal: nothing echoes
		}
		if on {
			t.Lflag |= unix.ECHO
		} else {
			t.Lflag &^= unix.ECHO
		}
		serr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return serr
}
