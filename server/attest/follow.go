package attest

import (
	"context"
	"errors"

	"github.com/sealroot/sealroot/server/store"
)

// FollowStore makes revocations and forgets made on any server sharing
// the store hold here at once: it follows w's machine change feed until
// ctx ends and ends this server's exchanges in progress of a machine
// revoked or forgotten, each refused whatever step it is in (as
// EndRevoked and EndForgotten do for this server's own operators), and
// withdraws the machine's tunnel peer and root here. Other changes
// (approval, root, secrets) need nothing: every exchange reads the record
// from the store, and its releasing transaction re-checks the record, the
// final guard either way.
func (s *Server) FollowStore(ctx context.Context, w store.MachineWatcher) error {
	return w.WatchMachines(ctx, func(c store.MachineChange) { s.machineChanged(ctx, c) })
}

func (s *Server) machineChanged(ctx context.Context, c store.MachineChange) {
	switch {
	case c.Resync:
		s.recheckLive(ctx)
	case c.Deleted:
		if n := s.live.end(c.MachineID, forgotten()); n > 0 {
			s.logger.Info("ended attestations of a forgotten machine", "machine", c.MachineID, "ended", n)
		}
		s.withdrawIfStill(ctx, c)
		if s.cluster != nil {
			if err := s.cluster.Store.ForgetHome(ctx, c.MachineID); err != nil {
				s.logger.Warn("forget the home of a forgotten machine", "machine", c.MachineID, "error", err)
			}
		}
	case c.State == store.StateRevoked:
		if n := s.live.end(c.MachineID, revokedDuring(c.Reason)); n > 0 {
			s.logger.Info("ended attestations of a revoked machine", "machine", c.MachineID, "ended", n)
		}
		s.withdrawIfStill(ctx, c)
	}
}

// withdrawIfStill withdraws the machine's tunnel peer and root here, if it
// is still revoked or forgotten: an approval and release that came after
// c keep theirs.
func (s *Server) withdrawIfStill(ctx context.Context, c store.MachineChange) {
	state, version, err := s.store.MachineVersion(ctx, c.MachineID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.logger.Warn("machine change feed: cannot read the record, withdrawing", "machine", c.MachineID, "error", err)
	case state != store.StateRevoked || version != c.Version:
		return
	}
	s.withdraw(c.MachineID)
}

// recheckLive reads the record of every machine with an exchange in
// progress, after the feed may have missed changes, and ends those of
// machines revoked or forgotten since.
func (s *Server) recheckLive(ctx context.Context) {
	s.live.mu.Lock()
	ids := make([]string, 0, len(s.live.byMachine))
	for id := range s.live.byMachine {
		ids = append(ids, id)
	}
	s.live.mu.Unlock()
	for _, id := range ids {
		m, err := s.store.Machine(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			s.live.end(id, forgotten())
		case err != nil:
			// The releasing transaction re-checks it; nothing to decide here.
			s.logger.Warn("re-check of an attestation in progress failed", "machine", id, "error", err)
		case m.State == store.StateRevoked:
			s.live.end(id, revokedDuring(m.Reason))
		}
	}
}
