package server

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

// spaceWatch warns before the state directory's filesystem is full: when
// its free space falls below low, every spaceWarnInterval while it stays
// there, and once when it is back. A full filesystem stops every release
// and operator change (the audit log fails closed), so the warning comes
// first.
type spaceWatch struct {
	dir    string
	low    uint64
	logger hclog.Logger

	below    bool
	lastWarn time.Time
}

// watch checks now and then every spaceCheckInterval until ctx ends.
func (w *spaceWatch) watch(ctx context.Context) error {
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
func (w *spaceWatch) check(now time.Time) {
	free, err := freeBytes(w.dir)
	if err != nil {
		w.logger.Error("cannot measure free space of the state directory", "dir", w.dir, "error", err)
		return
	}
	switch {
	case free < w.low && (!w.below || now.Sub(w.lastWarn) >= spaceWarnInterval):
		w.below, w.lastWarn = true, now
		w.logger.Warn("state directory's filesystem is nearly full: when the audit log cannot be written, no machine gets a credential and no operator change is made",
			"dir", w.dir, "free_bytes", free, "warn_below_bytes", w.low)
	case free >= w.low && w.below:
		w.below = false
		w.logger.Info("state directory's filesystem has space again", "dir", w.dir, "free_bytes", free)
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
