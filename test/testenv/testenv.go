// Package testenv gives tests what they take from their environment: the
// external tools they run, and a log that lands in the test's output.
package testenv

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// LookTool returns the path of the command name. When it is missing it
// skips t, or fails t under CI=true, where `make deps` has installed every
// tool the tests use.
func LookTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, name)
	}
	return p
}

// RequireTools checks tools as LookTool does; an absolute path names a
// file that must exist (a firmware image, say).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if strings.HasPrefix(tool, "/") {
			if _, err := os.Stat(tool); err != nil {
				missing(t, tool)
			}
			continue
		}
		LookTool(t, tool)
	}
}

func missing(t testing.TB, tool string) {
	t.Helper()
	Unavailable(t, "%s is missing: `make deps` installs it", tool)
}

// CI reports whether the tests run under CI=true, where every tool and
// privilege a test needs is present (`.ci/run` sets it).
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable ends t for want of something in its environment: it skips
// t, or fails it under CI=true, where nothing may be missing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf(format+" (CI=true: nothing may be missing)", args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot ends t as Unavailable does unless it runs as root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root: %s", why)
	}
}

// Writer returns a writer that sends each write to t.Log, after prefix
// and without its trailing newline.
func Writer(t testing.TB, prefix string) io.Writer { return writer{t, prefix} }

type writer struct {
	t      testing.TB
	prefix string
}

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Logger returns a logger named name (may be empty) at level that writes
// to t.Log.
func Logger(t testing.TB, name string, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: Writer(t, ""), Level: level})
}

// Buffer is a bytes.Buffer safe for concurrent writers and a polling
// reader: a log sink a test reads while a server writes to it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what has been written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
