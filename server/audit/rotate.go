package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Rotation rotates the log by size: when a record would take the file past
// MaxBytes, the file becomes <path>.1 (older ones shift to .2 … .Keep, the
// oldest beyond Keep is deleted) and a new file starts. No record is lost
// across a rotation: records are written one at a time under the log's
// lock, the old file is synced (after any group fsync on it ends) before
// it is closed, and when the new file
// cannot be made, records go on into the old one (now <path>.1).
type Rotation struct {
	MaxBytes int64 // 0: never rotate
	Keep     int   // rotated files kept; at least 1
}

// OpenRotating opens the log at path like Open, rotated as r says.
func OpenRotating(path string, r Rotation) (*Log, error) {
	if r.MaxBytes < 0 || r.MaxBytes > 0 && r.Keep < 1 {
		return nil, fmt.Errorf("audit: rotation %+v: want MaxBytes >= 0 and Keep >= 1", r)
	}
	l, err := Open(path)
	if err != nil {
		return nil, err
	}
	l.rot = r
	return l, nil
}

// rotateLocked rotates before a line of n bytes when it would take the
// file past MaxBytes (a file holding no record is never rotated).
func (l *Log) rotateLocked(n int) error {
	if l.rot.MaxBytes == 0 || l.size == 0 || l.size+int64(n) <= l.rot.MaxBytes {
		return nil
	}
	for l.syncing { // the group fsync runs on the current file
		l.synced.Wait()
	}
	if l.closed {
		return nil
	}
	if l.torn { // cut what a failed write left before the file is kept
		if err := l.f.Truncate(l.size); err != nil {
			return fmt.Errorf("audit: rotate: %w", err)
		}
		l.torn = false
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync before rotation: %w", err)
	}
	l.durable = max(l.durable, l.written) // every line so far is in the synced file
	os.Remove(rotatedName(l.path, l.rot.Keep))
	for i := l.rot.Keep - 1; i >= 1; i-- {
		if err := os.Rename(rotatedName(l.path, i), rotatedName(l.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit: rotate: %w", err)
		}
	}
	if err := os.Rename(l.path, rotatedName(l.path, 1)); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		// Keep writing to the old file, now <path>.1: nothing is lost.
		return fmt.Errorf("audit: rotate: new file: %w", err)
	}
	syncDir(filepath.Dir(l.path))
	old := l.f
	l.f, l.size = f, 0
	return old.Close()
}

// RotationError returns the last rotation that failed, if any, and
// clears it. Records are never lost by a failed rotation; the file only
// grows past MaxBytes.
func (l *Log) RotationError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.rotErr
	l.rotErr = nil
	return err
}

func rotatedName(path string, i int) string { return path + "." + strconv.Itoa(i) }

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Files returns the log's files at path, oldest first: the rotated ones
// that exist (<path>.N … <path>.1), then path.
func Files(path string) []string {
	var out []string
	for i := 1; ; i++ {
		if _, err := os.Stat(rotatedName(path, i)); err != nil {
			break
		}
		out = append([]string{rotatedName(path, i)}, out...)
	}
	return append(out, path)
}
