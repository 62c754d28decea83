// Package diskspace warns in the log before the state directory's
// filesystem is full.
package diskspace

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Space checks: how often, and how often a warning repeats while space
// stays low.
const (
	spaceCheckInterval = 30 * time.Second
	spaceWarnInterval  = 10 * time.Minute
)

// Watch warns before the state directory's filesystem is full: when
// its free space falls below Low, every spaceWarnInterval while it stays
// there, and once when it is back. A full filesystem stops every release
// and operator change (the audit log fails closed), so the warning comes
// first.
type Watch struct {
	Dir    string // the state directory
	Low    uint64 // warn below this many free bytes
	Logger hclog.Logger

	below    bool
	lastWarn time.Time
}

// Run checks now and then every spaceCheckInterval until ctx ends.
func (w *Watch) Run(ctx context.Context) error {
	t := time.NewTicker(spaceCheckInterval)
	defer t.Stop()
	for {
		w.check(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check measures the free space once and logs as the type describes.
func (w *Watch) check(now time.Time) {
	free, err := freeBytes(w.Dir)
	if err != nil {
		w.Logger.Error("cannot measure free space of the state directory", "dir", w.Dir, "error", err)
		return
	}
	switch {
	case free < w.Low && (!w.below || now.Sub(w.lastWarn) >= spaceWarnInterval):
		w.below, w.lastWarn = true, now
		w.Logger.Warn("state directory's filesystem is nearly full: when the audit log cannot be written, no machine gets a credential and no operator change is made",
			"dir", w.Dir, "free_bytes", free, "warn_below_bytes", w.Low)
	case free >= w.Low && w.below:
		w.below = false
		w.Logger.Info("state directory's filesystem has space again", "dir", w.Dir, "free_bytes", free)
	}
}

// freeBytes returns the bytes an unprivileged writer may still use on
// dir's filesystem.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}
