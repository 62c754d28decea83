package login

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// pipeConsole is a console over a real pipe, whose reads can be
// interrupted as a terminal's can.
type pipeConsole struct {
	r, w *os.File
	mu   sync.Mutex
	out  strings.Builder
	echo []bool
}

func newPipeConsole(t *testing.T) *pipeConsole {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return &pipeConsole{r: r, w: w}
}

func (p *pipeConsole) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *pipeConsole) shown() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *pipeConsole) console() Console {
	return Console{In: p.r, Out: p, Echo: func(on bool) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.echo = append(p.echo, on)
		return nil
	}}
}

func (p *pipeConsole) typed(t *testing.T, s string) {
	t.Helper()
	if _, err := p.w.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// waitShown waits until the console shows want n times.
func (p *pipeConsole) waitShown(t *testing.T, want string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); strings.Count(p.shown(), want) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("console shows %q, want %q %d times", p.shown(), want, n)
		}
	}
}

// TestAskOnEveryConsole: the prompts show on the screen and the serial
// line; the login typed on the serial line wins while the screen's half
// typed one is dropped (its echo back on); the screen's read is
// interrupted and the next Ask reads the screen afresh.
func TestAskOnEveryConsole(t *testing.T) {
	screen, serial := newPipeConsole(t), newPipeConsole(t)
	a := New(screen.console(), serial.console())
	s := &server{}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background(), &wire.LoginPrompt{}, s.exchange) }()
	screen.waitShown(t, "sealroot login: ", 1)
	serial.waitShown(t, "sealroot login: ", 1)
	screen.typed(t, "carol\n") // then walks away at the password prompt
	screen.waitShown(t, "password: ", 1)
	serial.typed(t, "alice\npw\n")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a login on the serial line")
	}
	if len(s.logins) != 1 || s.logins[0] != "alice/pw" {
		t.Fatalf("logins sent = %v, want alice/pw from the serial line", s.logins)
	}
	for name, c := range map[string]*pipeConsole{"screen": screen, "serial": serial} {
		if !strings.Contains(c.shown(), "login accepted") || strings.Contains(c.shown(), "pw\n") {
			t.Errorf("%s shows %q", name, c.shown())
		}
		if n := len(c.echo); n == 0 || !c.echo[n-1] {
			t.Errorf("%s echo switches %v, want back on", name, c.echo)
		}
	}
	// The screen reads again, from what is typed now.
	got := make(chan *wire.Login, 1)
	go func() {
		l, err := a.Ask()
		if err != nil {
			t.Errorf("Ask = %v", err)
		}
		got <- l
	}()
	screen.waitShown(t, "sealroot login: ", 2)
	screen.typed(t, "bob\nsecret\n")
	select {
	case l := <-got:
		if l == nil || l.User != "bob" || string(l.Password) != "secret" {
			t.Fatalf("second Ask = %+v, want bob from the screen", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second Ask did not read the screen")
	}
}

func TestAskEveryConsoleClosed(t *testing.T) {
	screen, serial := newPipeConsole(t), newPipeConsole(t)
	screen.w.Close()
	serial.w.Close()
	if _, err := New(screen.console(), serial.console()).Ask(); !errors.Is(err, ErrAborted) {
		t.Fatalf("Ask with every console closed = %v, want ErrAborted", err)
	}
	// One console closing leaves the other to answer.
	screen, serial = newPipeConsole(t), newPipeConsole(t)
	screen.w.Close()
	serial.typed(t, "alice\npw\n")
	if l, err := New(screen.console(), serial.console()).Ask(); err != nil || l.User != "alice" {
		t.Fatalf("Ask with the screen closed = %+v, %v; want alice from the serial line", l, err)
	}
}

func TestAskSeveralNeedsInterruptibleInputs(t *testing.T) {
	a := New(Console{In: strings.NewReader("alice\npw\n"), Out: &strings.Builder{}}, Console{In: strings.NewReader(""), Out: &strings.Builder{}})
	if _, err := a.Ask(); !errors.Is(err, ErrNotInterruptible) {
		t.Fatalf("Ask = %v, want ErrNotInterruptible", err)
	}
}
