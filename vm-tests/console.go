package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// ErrExited reports that the VM's console ended (QEMU exited) before an
// expected line appeared.
var ErrExited = errors.New("vmtest: VM exited")

// Timing markers: the first console line matching one ends a boot stage.
// Durations in [VM.Timings] count from [VM.Start].
const (
	MarkFirmware = "firmware" // first iPXE line: the firmware handed over
	MarkIPXE     = "ipxe"     // first kernel line ("Linux version")
	MarkKernel   = "kernel"   // first agent line ("sealroot:")
	MarkExit     = "exit"     // QEMU exited
	// StagePrefix prefixes agent stages reported as
	// "sealroot: [ok] <stage> (<duration>)"; their values are the reported
	// durations, not offsets.
	StagePrefix = "stage:"
)

var (
	ansiEscape = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>])`)
	agentStage = regexp.MustCompile(`^sealroot: \[ok\] (\S+) \(([0-9.]+[a-zµ]+)\)`)
)

// maxLine bounds one console line; longer output is split.
const maxLine = 64 << 10

type consoleLine struct {
	at   time.Duration // since start
	text string
}

// console collects a VM's serial output line by line.
type console struct {
	logf  func(string, ...any) // t.Logf, prefixed
	log   io.Writer            // the console log file
	start time.Time

	mu      sync.Mutex
	lines   []consoleLine
	next    int           // first line Expect has not consumed
	changed chan struct{} // closed and replaced when lines or eof change
	eof     bool
	marks   map[string]time.Duration
	done    chan struct{} // closed when run returns
}

func newConsole(logf func(string, ...any), log io.Writer) *console {
	return &console{
		logf:    logf,
		log:     log,
		changed: make(chan struct{}),
		marks:   map[string]time.Duration{},
		done:    make(chan struct{}),
	}
}

// run reads r until EOF.
func (c *console) run(r io.Reader) {
	defer close(c.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	sc.Split(splitConsole)
	for sc.Scan() {
		if b := sc.Bytes(); len(b) > 0 {
			c.add(cleanLine(string(b)))
		}
	}
	c.mu.Lock()
	c.eof = true
	c.broadcastLocked()
	c.mu.Unlock()
}

// cursorPosition is the terminal escape that moves the cursor (ESC [ row ;
// col H): full-screen firmware text, such as shim's alert boxes, is drawn
// line by line with it and no newline.
var cursorPosition = regexp.MustCompile(`\x1b\[\d+;\d+H`)

// splitConsole is a bufio.SplitFunc for console lines: text up to a
// newline, or up to a cursor-position escape, or maxLine bytes.
func splitConsole(data []byte, atEOF bool) (int, []byte, error) {
	// An escape at the start belongs to this line (cleanLine drops it).
	from := 0
	if loc := cursorPosition.FindIndex(data); loc != nil && loc[0] == 0 {
		from = loc[1]
	}
	rest := data[from:]
	nl := bytes.IndexByte(rest, '\n')
	if loc := cursorPosition.FindIndex(rest); loc != nil && (nl < 0 || loc[0] < nl) {
		return from + loc[0], data[:from+loc[0]], nil
	}
	switch {
	case nl >= 0:
		return from + nl + 1, data[:from+nl+1], nil
	case len(data) >= maxLine, atEOF && len(data) > 0:
		return len(data), data, nil
	}
	return 0, nil, nil
}

// cleanLine drops terminal escapes, carriage returns and other control
// characters (firmware output is full of them).
func cleanLine(s string) string {
	s = ansiEscape.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func (c *console) add(text string) {
	at := time.Since(c.start)
	fmt.Fprintf(c.log, "%8.3f %s\n", at.Seconds(), text)
	if text == "" {
		return
	}
	c.logf("%7.2fs %s", at.Seconds(), text)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, consoleLine{at, text})
	c.markLocked(text, at)
	c.broadcastLocked()
}

func (c *console) markLocked(text string, at time.Duration) {
	first := func(name string) {
		if _, ok := c.marks[name]; !ok {
			c.marks[name] = at
		}
	}
	switch {
	case strings.Contains(text, "iPXE"):
		first(MarkFirmware)
	case strings.Contains(text, "Linux version"):
		first(MarkIPXE)
	case strings.HasPrefix(text, "sealroot:"):
		first(MarkKernel)
		if m := agentStage.FindStringSubmatch(text); m != nil {
			if d, err := time.ParseDuration(m[2]); err == nil {
				c.marks[StagePrefix+m[1]] = d
			}
		}
	}
}

func (c *console) markExit() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.marks[MarkExit] = time.Since(c.start)
}

func (c *console) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// expect returns the submatches of the first line after the previous match
// that matches re.
func (c *console) expect(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	for {
		c.mu.Lock()
		for ; c.next < len(c.lines); c.next++ {
			if m := re.FindStringSubmatch(c.lines[c.next].text); m != nil {
				c.next++
				c.mu.Unlock()
				return m, nil
			}
		}
		eof, changed := c.eof, c.changed
		c.mu.Unlock()
		if eof {
			return nil, fmt.Errorf("expect %q: %w", re, ErrExited)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("expect %q: %w", re, ctx.Err())
		}
	}
}

func (c *console) timings() map[string]time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]time.Duration, len(c.marks))
	for k, v := range c.marks {
		m[k] = v
	}
	return m
}
