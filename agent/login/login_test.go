package login

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// console is a fake console: typed input, recorded output and echo
// switches.
type console struct {
	out    bytes.Buffer
	echoes []bool
}

func (c *console) asker(typed string) *Asker {
	return New(Console{In: strings.NewReader(typed), Out: &c.out, Echo: func(on bool) error {
		c.echoes = append(c.echoes, on)
		return nil
	}})
}

// server accepts alice/pw after refusing as told.
type server struct {
	logins []string
	refuse []*wire.LoginPrompt
}

func (s *server) exchange(_ context.Context, l *wire.Login) (*wire.LoginPrompt, error) {
	s.logins = append(s.logins, l.User+"/"+string(l.Password))
	if len(s.refuse) > 0 {
		p := s.refuse[0]
		s.refuse = s.refuse[1:]
		return p, nil
	}
	if l.User == "alice" && string(l.Password) == "pw" {
		return nil, nil
	}
	return &wire.LoginPrompt{Reason: "wrong user name or password"}, nil
}

func TestRunAccepted(t *testing.T) {
	c := &console{}
	s := &server{}
	if err := c.asker("alice\npw\n").Run(context.Background(), &wire.LoginPrompt{}, s.exchange); err != nil {
		t.Fatal(err)
	}
	if len(s.logins) != 1 || s.logins[0] != "alice/pw" {
		t.Errorf("logins sent: %v", s.logins)
	}
	if len(c.echoes) != 2 || c.echoes[0] || !c.echoes[1] {
		t.Errorf("echo switches %v, want off then on", c.echoes)
	}
	if strings.Contains(c.out.String(), "pw\n") || !strings.Contains(c.out.String(), "login accepted") {
		t.Errorf("console shows %q", c.out.String())
	}
}

func TestRunWrongThenRight(t *testing.T) {
	c := &console{}
	s := &server{}
	a := c.asker("alice\nnope\r\nalice\npw\n")
	if err := a.Run(context.Background(), &wire.LoginPrompt{}, s.exchange); err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.logins, ",") != "alice/nope,alice/pw" {
		t.Errorf("logins sent: %v", s.logins)
	}
	out := c.out.String()
	if !strings.Contains(out, "login refused: wrong user name or password") || strings.Contains(out, "nope") {
		t.Errorf("console shows %q", out)
	}
}

func TestRunWaitsForRateLimit(t *testing.T) {
	c := &console{}
	s := &server{refuse: []*wire.LoginPrompt{{Reason: "too many failed logins\x1b[2J", RetryAfterMillis: 4000}}}
	a := c.asker("alice\nx\nalice\npw\n")
	var slept []time.Duration
	a.Sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	if err := a.Run(context.Background(), &wire.LoginPrompt{}, s.exchange); err != nil {
		t.Fatal(err)
	}
	if len(slept) != 1 || slept[0] != 4*time.Second {
		t.Errorf("slept %v, want 4s", slept)
	}
	if strings.Contains(c.out.String(), "\x1b") {
		t.Error("a control character from the server reached the console")
	}
}

func TestAskRefusesBadLines(t *testing.T) {
	c := &console{}
	long := strings.Repeat("u", wire.MaxLoginUser+1)
	longPW := strings.Repeat("p", wire.MaxLoginPassword+1)
	a := c.asker("\n" + long + "\nbob\n\nbob\n" + longPW + "\nbob\nok\n")
	l, err := a.Ask()
	if err != nil {
		t.Fatal(err)
	}
	if l.User != "bob" || string(l.Password) != "ok" {
		t.Errorf("Ask = %q/%q", l.User, l.Password)
	}
	if n := strings.Count(c.out.String(), "a user name is"); n != 2 {
		t.Errorf("%d user name refusals, want 2", n)
	}
	if n := strings.Count(c.out.String(), "a password is"); n != 2 {
		t.Errorf("%d password refusals, want 2", n)
	}
}

func TestRunConsoleClosed(t *testing.T) {
	c := &console{}
	s := &server{}
	if err := c.asker("alice\n").Run(context.Background(), &wire.LoginPrompt{}, s.exchange); !errors.Is(err, ErrAborted) {
		t.Errorf("closed console: %v, want ErrAborted", err)
	}
	if len(c.echoes) != 2 || !c.echoes[1] {
		t.Errorf("echo not restored after a closed console: %v", c.echoes)
	}
}
