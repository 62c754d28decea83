package attest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sealroot/sealroot/server/store"
)

// DefaultCommitWithin is Cluster.CommitWithin's default: the attesting
// server waits up to 10 s for the home's answer (Cluster.AnswerTimeout),
// then seals and commits in well under a second unless the store is in
// trouble.
const DefaultCommitWithin = 30 * time.Second

// readiedBoots tracks, per machine, the boot a home server readied last
// for another server's release and whether it still waits to see that
// release committed. A newer readying of the machine, here for another
// server or for a release of this server's own, supersedes it.
type readiedBoots struct {
	// mu guards the fields below; it is also held while a boot whose
	// release never came is withdrawn, so that no newer readying of the
	// machine is installed meanwhile and taken away with it.
	mu   sync.Mutex
	gen  map[string]uint64 // machine ID -> generation of its latest readying
	next uint64
}

// mark records a new readying of machineID and returns its generation.
func (r *readiedBoots) mark(machineID string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == nil {
		r.gen = map[string]uint64{}
	}
	r.next++
	r.gen[machineID] = r.next
	return r.next
}

// done forgets readying gen of machineID, unless a newer one replaced it.
func (r *readiedBoots) done(machineID string, gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen[machineID] == gen {
		delete(r.gen, machineID)
	}
}

// drop forgets every readying of machineID still waiting (a release of
// this server's own replaces the peer and root).
func (r *readiedBoots) drop(machineID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.gen, machineID)
}

// withdrawIf calls withdraw while gen is still machineID's latest
// readying and forgets it; it reports whether it did.
func (r *readiedBoots) withdrawIf(machineID string, gen uint64, withdraw func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen[machineID] != gen {
		return false
	}
	delete(r.gen, machineID)
	withdraw()
	return true
}

// expectRelease waits Cluster.CommitWithin for the release that req asked
// this home server to ready (readying gen) and withdraws the tunnel peer
// and root it readied unless the store shows it committed by then: the
// machine's BootCount moved past the count the release was decided on.
// The attesting server's final commit may fail (a lost race, a refused
// record, no quorum) or that server may die after the answer; either way
// no credential points at what this server readied. A record that cannot
// be read is checked again after the same bound. It returns when ctx ends.
func (s *Server) expectRelease(ctx context.Context, req store.HomeRequest, gen uint64) {
	bound := orDefault(s.cluster.CommitWithin, DefaultCommitWithin)
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		m, err := s.store.MachineRecord(ctx, req.MachineID)
		switch {
		case errors.Is(err, store.ErrNotFound): // forgotten: nothing to keep
		case err != nil:
			s.logger.Warn("readied a boot for another server: cannot read the record to see its release, checking again",
				"machine", req.MachineID, "from", req.From, "error", err)
			timer.Reset(bound)
			continue
		case m.BootCount != req.BootCount:
			s.readied.done(req.MachineID, gen)
			return
		}
		if s.readied.withdrawIf(req.MachineID, gen, func() { s.withdraw(req.MachineID) }) {
			s.logger.Warn("withdrew a boot readied for another server: its release was not committed in time",
				"machine", req.MachineID, "from", req.From, "within", bound)
		}
		return
	}
}
