package attest

import (
	"time"

	"github.com/sealroot/sealroot/server/store"
)

// Attempt is the outcome of one attestation, as an Observer sees it. It
// holds no secret: the reason is what the agent is told.
type Attempt struct {
	Time      time.Time
	MachineID string // "" when the exchange ended before a valid hello
	Remote    string
	// Outcome is "allowed", "pending", "needs-reapproval", "refused",
	// "revoked" or "local-disk"; Check names the check that decided it.
	Outcome, Check, Reason string
	AgentVersion           string        // as the agent said (unverified)
	Duration               time.Duration // from the hello to the decision
	// InHistory says the attempt is in the machine's boot history
	// already: the release's own transaction wrote it (History).
	InHistory bool
}

// Observer is told every attestation outcome once it is decided and
// audited (boot history, metrics). Observe must not block for long; it
// runs on the exchange's goroutine.
type Observer interface {
	Observe(Attempt)
}

// History keeps the boot history (history.Recorder). It observes every
// outcome, as an Observer does, but an allowed attempt is written by the
// release's own store transaction (the one that records the release,
// with its one fsync), as Entry makes it: a release costs no history
// commit of its own, and its attempt is in the history once the release
// returns. Observe then gets that attempt with InHistory set.
type History interface {
	Observer
	// Entry returns a as the machine's history keeps it.
	Entry(a Attempt) store.BootAttempt
}

// Observers tells each of its observers, in order.
type Observers []Observer

// Observe implements Observer.
func (os Observers) Observe(a Attempt) {
	for _, o := range os {
		o.Observe(a)
	}
}

// InFlight returns how many attestations are running now.
func (s *Server) InFlight() int { return s.exchanges.Load().Taken }

// attempt is how x ended, decided now: the outcome, the check that
// decided it (decidingCheck when none failed) and why.
func (s *Server) attempt(x *exchange, outcome, check, reason string) Attempt {
	if check == "" {
		check = decidingCheck(outcome)
	}
	a := Attempt{
		Time:      s.now(),
		MachineID: x.machineID,
		Remote:    x.remote,
		Outcome:   outcome,
		Check:     check,
		Reason:    reason,
		Duration:  time.Since(x.started),
	}
	if x.hello != nil {
		a.AgentVersion = x.hello.Hints.AgentVer
	}
	return a
}

// observe tells the history and the observer, if any, of a.
func (s *Server) observe(a Attempt) {
	if s.history != nil {
		s.history.Observe(a)
	}
	if s.observer != nil {
		s.observer.Observe(a)
	}
}
