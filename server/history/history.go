// Package history keeps every machine's boot history: each attestation
// outcome (allowed, pending, needs-reapproval, refused, revoked) is
// appended to the machine's record (store.Machine.History, the last
// store.MaxHistory attempts). Attempts by identities the store does not
// know (impersonation attempts, garbage) have no record to go on: they
// are counted by check instead, never logged one line each.
package history

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/store"
)

// writeTimeout bounds one history write, so a stuck store cannot hold an
// exchange's goroutine.
const writeTimeout = 10 * time.Second

// Recorder implements attest.Observer. It is safe for concurrent use.
type Recorder struct {
	store  store.Store
	server string // this server's name, recorded with each attempt
	logger hclog.Logger

	mu      sync.Mutex        // guards unknown
	unknown map[string]uint64 // refusals of unknown identities, by check
}

var _ attest.Observer = (*Recorder)(nil)

// New returns a Recorder writing to st; server names this server in each
// attempt. logger may be nil.
func New(st store.Store, server string, logger hclog.Logger) *Recorder {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Recorder{store: st, server: server, logger: logger.Named("history"), unknown: make(map[string]uint64)}
}

// Observe records a on its machine, or counts it when the machine is
// unknown. History is bookkeeping: a failure to write it is logged and
// decides nothing.
func (r *Recorder) Observe(a attest.Attempt) {
	if a.MachineID == "" {
		r.countUnknown(a.Check)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	attempt := store.BootAttempt{
		Time:         a.Time,
		Server:       r.server,
		Remote:       a.Remote,
		Outcome:      a.Outcome,
		Check:        a.Check,
		Reason:       a.Reason,
		AgentVersion: a.AgentVersion,
		Duration:     a.Duration,
	}
	_, err := r.store.UpdateMachine(ctx, a.MachineID, func(m *store.Machine) error {
		m.AddAttempt(attempt)
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.countUnknown(a.Check)
	case err != nil:
		r.logger.Warn("boot history not written", "machine", a.MachineID, "error", err)
	}
}

func (r *Recorder) countUnknown(check string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unknown[check]++
}

// Unknown returns how many attempts by unknown identities were refused
// since the server started, by the check that refused them.
func (r *Recorder) Unknown() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.unknown)
}
