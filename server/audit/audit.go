// Package audit keeps sealroot's append-only decision log: one JSON object
// per line for every attestation verdict and every operator action.
//
// # Durability
//
// Record writes the line to the file with one write(2) before it returns, so
// an entry survives a crash of the server process. It does not wait for the
// disk: a background flusher fsyncs the file at most every FlushInterval
// (the first entry after a quiet period is synced at once). After a power
// loss, entries recorded during the last FlushInterval plus one fsync may be
// missing. Sync forces the file to disk; Close syncs and waits.
//
// # Secrets
//
// Entry has no field for secret values and callers must never put one in
// Reason: name secrets, never quote them. The log is readable by whoever
// can read the server's state directory (mode 0600).
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// FlushInterval is the minimum time between two fsyncs of the log.
const FlushInterval = 50 * time.Millisecond

// ErrClosed is returned by Record and Sync after Close.
var ErrClosed = errors.New("audit log closed")

// Entry is one decision or action.
type Entry struct {
	Time time.Time `json:"time"`
	// Actor is "agent" or "operator:<uid>".
	Actor  string `json:"actor"`
	Remote string `json:"remote,omitempty"`
	// MachineID is the machine's full ID, when known.
	MachineID string `json:"machine_id,omitempty"`
	// Action is "attest", "approve", "revoke", "forget", "secret-set", ...
	Action string `json:"action"`
	// Outcome is "allowed", "pending", "needs-reapproval", "refused",
	// "revoked", "ok" or "error".
	Outcome string `json:"outcome"`
	// Check names the check that failed, e.g. "quote-signature".
	Check  string `json:"check,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	path  string
	kick  chan struct{} // buffered(1): there is something to sync
	quit  chan struct{} // closed by Close
	done  chan struct{} // closed when the flusher has exited
	close sync.Once

	mu      sync.Mutex // guards the fields below
	f       *os.File
	closed  bool
	syncErr error // last failed background fsync, reported once
}

// Open opens the log at path for appending, creating it with mode 0600.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	l := &Log{
		path: path,
		f:    f,
		kick: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go l.flusher()
	return l, nil
}

// Record appends e as one line. A zero e.Time is set to the current time.
// It returns after the write; see the package doc for when it is on disk.
func (l *Log) Record(e Entry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: encode entry: %w", err)
	}
	line = append(line, '\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.syncErr; err != nil {
		l.syncErr = nil
		return fmt.Errorf("audit: earlier sync failed: %w", err)
	}
	if _, err := l.f.Write(line); err != nil {
		return fmt.Errorf("audit: write %s: %w", l.path, err)
	}
	select {
	case l.kick <- struct{}{}:
	default: // a sync is already due
	}
	return nil
}

// Sync forces every recorded entry to disk.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.syncLocked()
}

func (l *Log) syncLocked() error {
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s: %w", l.path, err)
	}
	return nil
}

// flusher fsyncs after each kick, then waits FlushInterval so that entries
// arriving meanwhile share the next fsync.
func (l *Log) flusher() {
	defer close(l.done)
	for {
		select {
		case <-l.kick:
		case <-l.quit:
			return
		}
		// No lock: writes go on during the fsync, and Close waits for
		// this goroutine before closing the file.
		if err := l.f.Sync(); err != nil {
			l.mu.Lock()
			l.syncErr = fmt.Errorf("sync %s: %w", l.path, err)
			l.mu.Unlock()
		}
		select {
		case <-time.After(FlushInterval):
		case <-l.quit:
			return
		}
	}
}

// Close syncs and closes the log and stops the flusher. It is safe to call
// more than once; later calls return nil.
func (l *Log) Close() error {
	var err error
	l.close.Do(func() {
		close(l.quit)
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closed = true
		err = errors.Join(l.syncErr, l.syncLocked(), l.f.Close())
	})
	return err
}

// ReadAll reads every entry of the log at path. An incomplete last line
// (a write cut short by a crash) is skipped; any other malformed line is an
// error naming its line number.
func ReadAll(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	var out []Entry
	r := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return out, nil // a partial last line has no '\n'
		}
		if err != nil {
			return nil, fmt.Errorf("read audit log %s: %w", path, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("audit log %s line %d: %w", path, n, err)
		}
		out = append(out, e)
	}
}
