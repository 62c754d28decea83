// Package history keeps every machine's boot history: each attestation
// outcome (allowed, pending, needs-reapproval, refused, revoked) is
// added to the machine's record (store.Machine.History, the last
// store.MaxHistory attempts, in time order). Attempts by identities the
// store does not know (impersonation attempts, garbage) have no record to
// go on: they are counted by check instead, never logged one line each.
//
// Recorder is the attestation server's attest.History. An allowed
// attempt, the common one, costs no write of its own: the release's
// store transaction, which commits the machine record with one fsync
// anyway, adds it (Entry makes the entry), so it is in the history once
// the release returns, and Observe skips it (Attempt.InHistory). Every
// other attempt Observe only queues: Run writes queued attempts in
// batches, each with one store.AddAttempts (one put per attempt, in a
// transaction the store shares with concurrent updates: one fsync), so
// an attestation never waits for its history. A batch gathers what
// arrives within batchWindow of its first attempt (up to maxBatch), so a
// storm of refusals costs a few transactions a second, not one per
// attempt. Such an attempt is therefore written up to batchWindow after
// the decision (Flush waits for it), in its place by time among those a
// release wrote meanwhile; a full queue drops attempts and counts them
// (Dropped); on shutdown (Run's ctx ends) everything queued is written at
// once.
package history

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/store"
)

// writeTimeout bounds one history write, so a stuck store cannot hold
// the writer.
const writeTimeout = 10 * time.Second

// queueSize is how many attempts may wait to be written.
const queueSize = 4096

// Recorder implements attest.History. It is safe for concurrent use.
type Recorder struct {
	store  store.Store
	server string // this server's name, recorded with each attempt
	logger hclog.Logger

	queue   chan attest.Attempt
	pending sync.WaitGroup // attempts queued and not yet written

	mu      sync.Mutex        // guards the fields below
	unknown map[string]uint64 // refusals of unknown identities, by check
	dropped uint64            // attempts not written: the queue was full
}

var _ attest.History = (*Recorder)(nil)

// New returns a Recorder writing to st; server names this server in each
// attempt. logger may be nil.
func New(st store.Store, server string, logger hclog.Logger) *Recorder {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Recorder{store: st, server: server, logger: logger.Named("history"),
		queue: make(chan attest.Attempt, queueSize), unknown: make(map[string]uint64)}
}

// Observe queues a for Run to write on its machine (or count, when the
// machine is unknown), unless the release's transaction wrote it
// already. It never blocks.
func (r *Recorder) Observe(a attest.Attempt) {
	if a.MachineID == "" {
		r.countUnknown(a.Check)
		return
	}
	if a.InHistory {
		return
	}
	r.pending.Add(1)
	select {
	case r.queue <- a:
	default:
		r.pending.Done()
		r.mu.Lock()
		r.dropped++
		r.mu.Unlock()
	}
}

// Run writes queued attempts until ctx ends, then writes what is still
// queued and returns.
func (r *Recorder) Run(ctx context.Context) error {
	for {
		select {
		case a := <-r.queue:
			r.writeBatch(ctx, a)
		case <-ctx.Done():
			for {
				select {
				case a := <-r.queue:
					r.writeBatch(ctx, a)
				default:
					return nil
				}
			}
		}
	}
}

// Flush waits until every attempt observed so far is in the store (Run
// must be running).
func (r *Recorder) Flush() { r.pending.Wait() }

// writeBatch writes first and what arrives within batchWindow behind it
// (up to maxBatch; once ctx ended, only what is queued) in one store call.
func (r *Recorder) writeBatch(ctx context.Context, first attest.Attempt) {
	batch := []store.MachineAttempt{r.attempt(first)}
	window := time.NewTimer(batchWindow)
	defer window.Stop()
	for len(batch) < maxBatch {
		select {
		case a := <-r.queue:
			batch = append(batch, r.attempt(a))
			continue
		default:
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case a := <-r.queue:
			batch = append(batch, r.attempt(a))
			continue
		case <-window.C:
		case <-ctx.Done():
		}
		break
	}
	defer r.pending.Add(-len(batch))
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	unknown, err := r.store.AddAttempts(ctx, batch)
	if err != nil {
		// History is bookkeeping: a failure to write it is logged and
		// decides nothing.
		r.logger.Warn("boot history not written", "attempts", len(batch), "error", err)
		return
	}
	for _, a := range unknown {
		r.countUnknown(a.Attempt.Check)
	}
}

// maxBatch bounds the attempts written in one store call.
const maxBatch = 256

// batchWindow is how long a batch gathers attempts after its first: the
// history's group commit interval, and how late an attempt may appear in
// machine show.
const batchWindow = 20 * time.Millisecond

// attempt is a for AddAttempts.
func (r *Recorder) attempt(a attest.Attempt) store.MachineAttempt {
	return store.MachineAttempt{MachineID: a.MachineID, Attempt: r.Entry(a)}
}

// Entry returns a as the machine's history keeps it (attest.History).
func (r *Recorder) Entry(a attest.Attempt) store.BootAttempt {
	return store.BootAttempt{
		Time:         a.Time,
		Server:       r.server,
		Remote:       a.Remote,
		Outcome:      a.Outcome,
		Check:        a.Check,
		Reason:       a.Reason,
		AgentVersion: a.AgentVersion,
		Duration:     a.Duration,
	}
}

func (r *Recorder) countUnknown(check string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unknown[check]++
}

// Dropped returns how many attempts were not written because the queue
// was full.
func (r *Recorder) Dropped() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// Unknown returns how many attempts by unknown identities were refused
// since the server started, by the check that refused them.
func (r *Recorder) Unknown() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.unknown)
}
