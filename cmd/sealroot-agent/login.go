package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/agent/console"
	"github.com/sealroot/sealroot/agent/login"
	"github.com/sealroot/sealroot/wire"
)

// consoleLogin asks for a per-user root's login on every active console
// (the screen and the serial line with "console=ttyS0 console=tty0"):
// each shows the prompts and is read, with echo off while the password
// is typed, and the first console a login is typed on answers (package
// login). Without the consoles' list it asks on standard input
// (/dev/console, the kernel's last console=) and writes to out.
func consoleLogin(out io.Writer) func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
	return func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
		fmt.Fprintln(out, "sealroot: this machine's root is per user: log in to mount yours")
		cons := []login.Console{{In: os.Stdin, Out: out, Echo: func(on bool) error { return setEcho(os.Stdin, on) }}}
		if files, err := console.OpenInputs("/sys", "/dev"); err == nil {
			defer closeAll(files)
			cons = cons[:0]
			for _, f := range files {
				cons = append(cons, login.Console{In: f, Out: f, Echo: func(on bool) error { return setEcho(f, on) }})
			}
		} else {
			fmt.Fprintf(out, "sealroot: %v; asking on /dev/console only\n", err)
		}
		return login.New(cons...).Run(ctx, first, send)
	}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// setEcho switches the terminal echo of f without taking f out of
// non-blocking mode (as f.Fd would); when f is no terminal there is
// nothing to switch.
func setEcho(f *os.File, on bool) error {
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
