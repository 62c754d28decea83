// Package login asks for a user's login on the machine's console, for
// per-user roots: after attestation, when the server answers with a
// wire.LoginPrompt, the agent reads a user name and a password (echo
// off) and sends them as a wire.Login on the attested stream, until the
// server accepts one. The password is never echoed, logged or kept.
//
// The server's side is server/attest (perUser) over server/users
// (Checker); the agent's attest client calls Run through Config.Login
// (cmd/sealroot-agent: consoleLogin).
//
// # Several consoles
//
// An Asker may ask on several consoles at once (the screen and the
// serial line): each shows the prompts and is read by its own goroutine,
// and the first console on which a complete login (user name and
// password) is typed answers. Ask then interrupts the other reads
// (agent/coninput.Interrupt) and waits for their goroutines before it
// returns, so no goroutine outlives it; what was half typed there is
// dropped. The consoles come from agent/coninput.Open, as the boot
// menu's do.
package login

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sealroot/sealroot/agent/coninput"
	"github.com/sealroot/sealroot/wire"
)

// Console is one console to ask on.
type Console struct {
	In  io.Reader
	Out io.Writer
	// Echo switches the terminal's echo; nil when In is no terminal
	// (then the password is read as typed, still never written out).
	Echo func(on bool) error
}

// Exchange sends l to the server and returns its next prompt, or nil
// when the login was accepted.
type Exchange func(ctx context.Context, l *wire.Login) (*wire.LoginPrompt, error)

// ErrAborted means the console closed before a login was accepted.
var ErrAborted = errors.New("login: console closed")

// Asker asks for logins on one or more consoles.
type Asker struct {
	cons []*asker
	// Sleep waits for a rate limit; default sleeps, ending early with ctx.
	Sleep func(ctx context.Context, d time.Duration) error
}

// asker reads logins from one console.
type asker struct {
	con Console
	in  *bufio.Reader
}

// ErrNotInterruptible means an Asker on several consoles has an input
// whose read cannot be interrupted (it is no coninput.Input).
var ErrNotInterruptible = errors.New("login: a console input of several cannot be interrupted")

// New returns an Asker on cons (at least one). With several, each In
// must have SetReadDeadline (Ask fails with ErrNotInterruptible).
func New(cons ...Console) *Asker {
	a := &Asker{Sleep: sleep}
	for _, c := range cons {
		a.cons = append(a.cons, &asker{con: c, in: bufio.NewReaderSize(c.In, 256)})
	}
	return a
}

// say writes a message to every console.
func (a *Asker) say(format string, args ...any) {
	for _, c := range a.cons {
		fmt.Fprintf(c.con.Out, format, args...)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run asks until ex accepts a login. prompt is the server's first
// LoginPrompt.
func (a *Asker) Run(ctx context.Context, prompt *wire.LoginPrompt, ex Exchange) error {
	for prompt != nil {
		if prompt.Reason != "" {
			a.say("login refused: %s\n", printable(prompt.Reason))
		}
		if d := time.Duration(prompt.RetryAfterMillis) * time.Millisecond; d > 0 {
			a.say("waiting %s before the next try\n", d.Round(time.Second))
			if err := a.Sleep(ctx, d); err != nil {
				return err
			}
		}
		l, err := a.Ask()
		if err != nil {
			return err
		}
		prompt, err = ex(ctx, l)
		clear(l.Password)
		if err != nil {
			return fmt.Errorf("login: %w", err)
		}
	}
	a.say("login accepted\n")
	return nil
}

// Ask reads one user name and password, from the first console on which
// one is typed completely; a console whose input ends or fails drops
// out, and when all have, Ask returns the first console's error
// (ErrAborted when its input ended).
func (a *Asker) Ask() (*wire.Login, error) {
	if len(a.cons) == 1 {
		return a.cons[0].ask()
	}
	for _, c := range a.cons {
		if _, ok := c.con.In.(coninput.Input); !ok {
			return nil, ErrNotInterruptible
		}
	}
	type answer struct {
		i   int
		l   *wire.Login
		err error
	}
	answers := make(chan answer, len(a.cons))
	var wg sync.WaitGroup
	for i, c := range a.cons {
		wg.Go(func() {
			l, err := c.ask()
			answers <- answer{i, l, err}
		})
	}
	errs := make([]error, len(a.cons))
	var won *wire.Login
	winner := -1
	for range a.cons {
		ans := <-answers
		if ans.err == nil && won == nil {
			won, winner = ans.l, ans.i
			a.interrupt(winner)
			continue
		}
		if ans.l != nil {
			clear(ans.l.Password) // typed on a second console meanwhile
		}
		errs[ans.i] = ans.err
	}
	wg.Wait()
	a.resume(winner)
	if won != nil {
		return won, nil
	}
	return nil, errs[0]
}

// interrupt ends the blocked reads of every console but the winner's.
func (a *Asker) interrupt(winner int) {
	for i, c := range a.cons {
		if i != winner {
			coninput.Interrupt(c.con.In.(coninput.Input))
		}
	}
}

// resume lets the consoles but the winner's be read again after
// interrupt, dropping what was buffered there; the winner's keeps what
// was typed ahead.
func (a *Asker) resume(winner int) {
	for i, c := range a.cons {
		if i != winner {
			coninput.Resume(c.con.In.(coninput.Input))
			c.in.Reset(c.con.In)
		}
	}
}

// ask reads one user name and password from the console, asking again
// for a line that is empty or too long.
func (a *asker) ask() (*wire.Login, error) {
	for {
		fmt.Fprint(a.con.Out, "sealroot login: ")
		user, err := a.line(wire.MaxLoginUser)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSpace(string(user))
		if name == "" || len(user) > wire.MaxLoginUser || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			fmt.Fprintf(a.con.Out, "a user name is 1 to %d printable characters\n", wire.MaxLoginUser)
			continue
		}
		pw, err := a.password()
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 || len(pw) > wire.MaxLoginPassword {
			clear(pw)
			fmt.Fprintf(a.con.Out, "a password is 1 to %d bytes\n", wire.MaxLoginPassword)
			continue
		}
		return &wire.Login{User: name, Password: pw}, nil
	}
}

func (a *asker) password() ([]byte, error) {
	fmt.Fprint(a.con.Out, "password: ")
	if a.con.Echo != nil {
		if err := a.con.Echo(false); err != nil {
			return nil, fmt.Errorf("login: echo off: %w", err)
		}
		defer a.con.Echo(true)
	}
	pw, err := a.line(wire.MaxLoginPassword)
	fmt.Fprintln(a.con.Out)
	return pw, err
}

// line reads one line without its end. A line longer than limit is read
// to its end and returned longer than limit, so the caller can refuse it.
func (a *asker) line(limit int) ([]byte, error) {
	var out []byte
	for {
		b, err := a.in.ReadByte()
		if err != nil {
			clear(out)
			if errors.Is(err, io.EOF) {
				return nil, ErrAborted
			}
			return nil, fmt.Errorf("login: read console: %w", err)
		}
		if b == '\n' {
			if n := len(out); n > 0 && out[n-1] == '\r' {
				out = out[:n-1]
			}
			return out, nil
		}
		if len(out) <= limit {
			out = append(out, b)
		}
	}
}

// printable drops control characters from a server message before it
// reaches the console.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
