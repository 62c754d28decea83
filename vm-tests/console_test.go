package vmtest

import (
	"context"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCleanLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "hello\n", "hello"},
		{"crlf", "BdsDxe: loading Boot0001\r\n", "BdsDxe: loading Boot0001"},
		{"ansi_color_and_cursor", "\x1b[2J\x1b[01;01H\x1b[=3h\x1b[0m\x1b[37m\x1b[40mOK\n", "OK"},
		{"charset_select", "\x1b(Bplain", "plain"},
		{"tab_kept", "a\tb", "a\tb"},
		{"nul_and_del", "a\x00b\x7fc", "abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := cleanLine(tc.in); got != tc.want {
				t.Errorf("cleanLine(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// feed runs a console over text and returns it after EOF.
func feed(t *testing.T, text string) *console {
	t.Helper()
	c := newConsole(t.Logf, io.Discard)
	c.start = time.Now()
	c.run(strings.NewReader(text))
	return c
}

func TestConsoleExpect(t *testing.T) {
	ctx := context.Background()
	c := feed(t, "a 1\nb 2\na 3\npartial")

	m, err := c.expect(ctx, regexp.MustCompile(`^a (\d)`))
	if err != nil || m[1] != "1" {
		t.Fatalf("first expect = %q, %v; want 1", m, err)
	}
	m, err = c.expect(ctx, regexp.MustCompile(`^a (\d)`))
	if err != nil || m[1] != "3" {
		t.Fatalf("second expect = %q, %v; want 3 (expects consume lines)", m, err)
	}
	if _, err := c.expect(ctx, regexp.MustCompile(`^partial$`)); err != nil {
		t.Fatalf("a last line without newline: %v", err)
	}
	if _, err := c.expect(ctx, regexp.MustCompile(`^b`)); !errors.Is(err, ErrExited) {
		t.Fatalf("expect of an already consumed line after EOF = %v, want ErrExited", err)
	}
}

func TestConsoleExpectContext(t *testing.T) {
	c := newConsole(t.Logf, io.Discard)
	c.start = time.Now()
	pr, pw := io.Pipe()
	go c.run(pr)
	defer func() { pw.Close(); <-c.done }()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.expect(ctx, regexp.MustCompile(`never`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expect on a silent console = %v, want context.DeadlineExceeded", err)
	}
	go pw.Write([]byte("late line\n"))
	if _, err := c.expect(context.Background(), regexp.MustCompile(`late`)); err != nil {
		t.Fatalf("expect of a line written later: %v", err)
	}
}

func TestConsoleTimings(t *testing.T) {
	c := feed(t, strings.Join([]string{
		"SeaBIOS (version 1.16.2)",
		"iPXE (http://ipxe.org) 00:03.0 C000 PCI2.10 PnP PMM+",
		"iPXE 1.21 -- second iPXE line",
		"[    0.000000] Linux version 6.1.0-56-amd64",
		"sealroot: hello",
		"sealroot: [ok] entropy (1.5ms)",
		"sealroot: [ok] dhcp (2.4s)",
		"sealroot: [ok] broken (forever)",
		"sealroot: [failed] attest (1s)",
	}, "\n"))
	tm := c.timings()
	for _, k := range []string{MarkFirmware, MarkIPXE, MarkKernel} {
		if _, ok := tm[k]; !ok {
			t.Errorf("timings()[%q] missing: %v", k, tm)
		}
	}
	if !(tm[MarkFirmware] <= tm[MarkIPXE] && tm[MarkIPXE] <= tm[MarkKernel]) {
		t.Errorf("markers out of order: %v", tm)
	}
	want := map[string]time.Duration{"stage:entropy": 1500 * time.Microsecond, "stage:dhcp": 2400 * time.Millisecond}
	for k, d := range want {
		if tm[k] != d {
			t.Errorf("timings()[%q] = %v, want %v", k, tm[k], d)
		}
	}
	for _, k := range []string{"stage:broken", "stage:attest", MarkExit} {
		if _, ok := tm[k]; ok {
			t.Errorf("timings()[%q] present, want absent", k)
		}
	}
}

// TestConsoleCursorLines: text drawn with cursor positioning and no
// newline (shim's alert box) becomes one line per positioned write.
func TestConsoleCursorLines(t *testing.T) {
	c := feed(t, "boot\n\x1b[10;5H+----+\x1b[11;5H| Verification failed: (0x1A) Security Violation |\x1b[12;5H+----+")
	var got []string
	for _, l := range c.lines {
		got = append(got, l.text)
	}
	want := []string{"boot", "+----+", "| Verification failed: (0x1A) Security Violation |", "+----+"}
	if !slices.Equal(got, want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
}
