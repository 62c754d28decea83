package store

import (
	"context"
	"sync"
)

// changeFeed hands the DB's committed machine changes to its watchers. A
// watcher that falls behind by more than its buffer misses changes and is
// told to resync. The zero value is ready to use.
type changeFeed struct {
	mu       sync.Mutex // guards watchers
	watchers map[*feedWatcher]struct{}
}

type feedWatcher struct {
	changes chan MachineChange
	missed  chan struct{} // holds a token while changes were dropped
}

// feedBuffer is how many changes a watcher may have unread.
const feedBuffer = 256

// publish hands c to every watcher without waiting for any.
func (f *changeFeed) publish(c MachineChange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		select {
		case w.changes <- c:
		default:
			select {
			case w.missed <- struct{}{}:
			default:
			}
		}
	}
}

func (f *changeFeed) watch(ctx context.Context, fn func(MachineChange)) error {
	w := &feedWatcher{changes: make(chan MachineChange, feedBuffer), missed: make(chan struct{}, 1)}
	f.mu.Lock()
	if f.watchers == nil {
		f.watchers = make(map[*feedWatcher]struct{})
	}
	f.watchers[w] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watchers, w)
		f.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-w.changes:
			fn(c)
		case <-w.missed:
			fn(MachineChange{Resync: true})
		}
	}
}

// WatchMachines implements MachineWatcher: the changes this DB committed
// (it has one process: bbolt locks its file), told after each commit.
// Group changes that give their machines new versions are not reported
// one by one; nothing follows them but the release's own re-check.
func (db *DB) WatchMachines(ctx context.Context, fn func(MachineChange)) error {
	return db.feed.watch(ctx, fn)
}
