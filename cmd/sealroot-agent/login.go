package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/agent/login"
	"github.com/sealroot/sealroot/wire"
)

// consoleLogin asks for a per-user root's login: the prompts go to out
// (every console), the answer is read from standard input (/dev/console,
// the kernel's last console=) with echo off while the password is typed.
func consoleLogin(out io.Writer) func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
	return func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
		fmt.Fprintln(out, "sealroot: this machine's root is per user: log in to mount yours")
		a := login.New(login.Console{In: os.Stdin, Out: out, Echo: stdinEcho})
		return a.Run(ctx, first, send)
	}
}

// stdinEcho switches the terminal echo of standard input; when it is no
// terminal there is nothing to switch.
func stdinEcho(on bool) error {
	fd := int(os.Stdin.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil // not a terminal: nothing echoes
	}
	if on {
		t.Lflag |= unix.ECHO
	} else {
		t.Lflag &^= unix.ECHO
	}
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
