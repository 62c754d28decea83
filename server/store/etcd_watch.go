package store

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchRetry is how long WatchMachines waits before it watches again
// after its watch was cut (no quorum, member gone, compaction).
const watchRetry = time.Second

// WatchMachines implements MachineWatcher with an etcd watch on the
// machines prefix, so it reports the changes of every server sharing the
// store. The watch requires a leader: a member cut off from the quorum
// ends it, and it resumes, from the revision it reached where etcd still
// has it, else from now after a Resync change.
func (s *Etcd) WatchMachines(ctx context.Context, fn func(MachineChange)) error {
	rev, err := s.currentRevision(ctx)
	for err != nil {
		s.logger.Warn("machine change feed: cannot read the store's revision", "error", err)
		if !sleepCtx(ctx, watchRetry) {
			return nil
		}
		rev, err = s.currentRevision(ctx)
	}
	next := rev + 1
	for {
		next = s.watchFrom(ctx, next, fn)
		if ctx.Err() != nil {
			return nil
		}
		if !sleepCtx(ctx, watchRetry) {
			return nil
		}
	}
}

// watchFrom watches from revision next until the watch ends and returns
// the revision to resume from; 0 resumes from now, after fn was told to
// resync.
func (s *Etcd) watchFrom(ctx context.Context, next int64, fn func(MachineChange)) int64 {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if next > 0 {
		opts = append(opts, clientv3.WithRev(next))
	} else {
		fn(MachineChange{Resync: true})
	}
	for wr := range s.client.Watch(wctx, s.keys.watchPrefix(), opts...) {
		if wr.CompactRevision != 0 {
			s.logger.Warn("machine change feed: changes compacted away, resyncing", "revision", wr.CompactRevision)
			return 0
		}
		if err := wr.Err(); err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("machine change feed cut, resuming", "error", err)
			}
			return next
		}
		for _, ev := range wr.Events {
			id := strings.TrimPrefix(string(ev.Kv.Key), s.keys.machines())
			if ev.Type == clientv3.EventTypeDelete {
				fn(MachineChange{MachineID: id, Deleted: true})
			} else if m, err := decodeMachine(id, ev.Kv.Value); err != nil {
				s.logger.Error("machine change feed: undecodable record, resyncing", "machine", id, "error", err)
				fn(MachineChange{Resync: true})
			} else {
				fn(changeOf(m))
			}
			next = ev.Kv.ModRevision + 1
		}
	}
	if ctx.Err() == nil {
		s.logger.Warn("machine change feed closed, resuming")
	}
	return next
}

func (s *Etcd) currentRevision(ctx context.Context) (int64, error) {
	resp, err := s.client.Get(ctx, s.keys.version())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
