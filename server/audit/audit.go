// Package audit keeps sealroot's append-only decision log: one JSON object
// per line for every attestation verdict and every operator action.
//
// # Durability: the log fails closed
//
// Record returns only once its line is on disk (written and fsync'd), and
// it returns an error wrapping ErrNotWritten when that cannot be done
// (a full disk, say). Callers record a decision before they act on it: no
// credential leaves and no operator change is applied without its record.
// A write cut short (a full disk) is cut off the file at once, so the next
// record starts on a line of its own; a torn last line left by a crash is
// cut off by Open (Log.Repaired says how many bytes).
//
// Records are written one at a time, in order; concurrent records share
// an fsync (group commit): one caller syncs for everyone whose line was
// written before it started, the others wait for its result.
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

// ErrNotWritten is wrapped by every error of Record: the entry is not
// (known to be) on disk, so the decision it records must not take effect.
var ErrNotWritten = errors.New("audit record not written")

// ErrClosed is returned by Record and Sync after Close.
var ErrClosed = fmt.Errorf("audit log closed: %w", ErrNotWritten)

// Entry is one decision or action.
type Entry struct {
	Time time.Time `json:"time"`
	// Actor is "server" for the server's own decisions (attestation
	// verdicts) and "operator:<uid>" for operator actions.
	Actor  string `json:"actor"`
	Remote string `json:"remote,omitempty"`
	// MachineID is the machine's full ID, when known.
	MachineID string `json:"machine_id,omitempty"`
	// Action is "attest", "approve", "revoke", "forget", "secret-set",
	// "secret-load", ...
	Action string `json:"action"`
	// Outcome is "allowed", "pending", "needs-reapproval", "refused",
	// "revoked", "local-disk" (a boot menu's local disk), "ok" or "error".
	Outcome string `json:"outcome"`
	// Check names the check that failed, e.g. "quote-signature".
	Check  string `json:"check,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	path     string
	repaired int64

	mu     sync.Mutex // guards the fields below; held across writes, not fsyncs
	synced sync.Cond  // on mu: an fsync ended
	f      *os.File
	size   int64 // bytes of whole lines in the file
	torn   bool  // bytes past size may be in the file: cut them first
	closed bool

	// Lines are numbered from 1 in the order written. Lines up to
	// durable are on disk; lines up to failed were covered by an fsync
	// that failed and count as lost (syncErr says why).
	written, durable, failed uint64
	syncing                  bool // an fsync is running
	syncErr                  error
	onRecord                 func(Entry) // see OnRecord

	rot    Rotation // rotate.go
	rotErr error    // last failed rotation
}

// Open opens the log at path for appending, creating it with mode 0600.
// A last line without its newline (a write cut short by a crash or a full
// disk) is cut off, so no record is ever glued to it.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	size, repaired, err := repairTail(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	l := &Log{path: path, repaired: repaired, f: f, size: size}
	l.synced.L = &l.mu
	return l, nil
}

// repairTail cuts a partial last line off f and returns the size of the
// whole lines and the number of bytes cut.
func repairTail(f *os.File) (size, cut int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	end := fi.Size()
	size = end
	buf := make([]byte, 4096)
	for size > 0 {
		n := int64(len(buf))
		if size < n {
			n = size
		}
		if _, err := f.ReadAt(buf[:n], size-n); err != nil {
			return 0, 0, fmt.Errorf("read tail: %w", err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			size = size - n + int64(i) + 1
			break
		}
		size -= n
	}
	if size == end {
		return size, 0, nil
	}
	if err := f.Truncate(size); err != nil {
		return 0, 0, fmt.Errorf("cut torn last line: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("cut torn last line: %w", err)
	}
	return size, end - size, nil
}

// Repaired returns how many bytes of a torn last line Open cut off.
func (l *Log) Repaired() int64 { return l.repaired }

// Record appends e as one line and syncs it to disk before it returns. A
// zero e.Time is set to the current time. Any error wraps ErrNotWritten.
func (l *Log) Record(e Entry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: encode entry: %w", ErrNotWritten, err)
	}
	line = append(line, '\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.rotateLocked(len(line)); err != nil {
		l.rotErr = err // the record goes on into the current file
	}
	if err := l.appendLocked(line); err != nil {
		return fmt.Errorf("%w: %w", ErrNotWritten, err) // err names the file
	}
	l.written++
	if err := l.syncLocked(l.written); err != nil {
		return err
	}
	if l.onRecord != nil {
		l.onRecord(e)
	}
	return nil
}

// OnRecord makes Record call fn with each entry once it is on disk, in
// the order written (a live event stream). fn runs with the log locked:
// it must not block or call the log. Call it before the log is used.
func (l *Log) OnRecord(fn func(Entry)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onRecord = fn
}

// syncLocked returns once line n is on disk, or known not to be. The
// first waiter with no fsync running starts one for every line written so
// far; the others wait for it.
func (l *Log) syncLocked(n uint64) error {
	for {
		switch {
		case n <= l.failed:
			return fmt.Errorf("%w: %w", ErrNotWritten, l.syncErr)
		case n <= l.durable:
			return nil
		case l.closed:
			return ErrClosed
		case l.syncing:
			l.synced.Wait()
			continue
		}
		l.syncing = true
		upTo, f := l.written, l.f // a rotation waits for this fsync
		l.mu.Unlock()
		err := f.Sync()
		l.mu.Lock()
		l.syncing = false
		if err != nil {
			l.failed, l.syncErr = max(l.failed, upTo), err
		} else {
			l.durable = max(l.durable, upTo)
		}
		l.synced.Broadcast()
	}
}

// appendLocked writes line at the end of the whole lines, first cutting
// off what an earlier failed write left.
func (l *Log) appendLocked(line []byte) error {
	if l.torn {
		if err := l.f.Truncate(l.size); err != nil {
			return fmt.Errorf("cut a torn line: %w", err)
		}
		l.torn = false
	}
	n, err := l.f.Write(line)
	if err != nil {
		if n > 0 {
			l.torn = true
			if terr := l.f.Truncate(l.size); terr == nil {
				l.torn = false
			}
		}
		return err
	}
	l.size += int64(n)
	return nil
}

// Sync forces every recorded entry to disk (Record already has).
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.syncLocked(l.written)
}

// Close closes the log. It is safe to call more than once; later calls
// return nil.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	for l.syncing {
		l.synced.Wait()
	}
	l.synced.Broadcast() // waiters see closed
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("audit: close %s: %w", l.path, err)
	}
	return nil
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
