package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/sealroot/sealroot/agent/coninput"
	"github.com/sealroot/sealroot/agent/login"
	"github.com/sealroot/sealroot/wire"
)

// consoleLogin asks for a per-user root's login on every active console
// (the screen and the serial line with "console=ttyS0 console=tty0"):
// each shows the prompts and is read, with echo off while the password
// is typed, and the first console a login is typed on answers (package
// login over package coninput, as the boot menu). Without the consoles'
// list it asks on standard input (/dev/console, the kernel's last
// console=) and writes to out.
func consoleLogin(out io.Writer) func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
	return func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
		fmt.Fprintln(out, "sealroot: this machine's root is per user: log in to mount yours")
		cons := []login.Console{{In: os.Stdin, Out: out, Echo: func(on bool) error { return coninput.SetEcho(os.Stdin, on) }}}
		if files, err := coninput.Open("/sys", "/dev"); err == nil {
			defer coninput.CloseAll(files)
			cons = cons[:0]
			for _, f := range files {
				cons = append(cons, login.Console{In: f, Out: f, Echo: func(on bool) error { return coninput.SetEcho(f, on) }})
			}
		} else {
			fmt.Fprintf(out, "sealroot: %v; asking on /dev/console only\n", err)
		}
		return login.New(cons...).Run(ctx, first, send)
	}
}
