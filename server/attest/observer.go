package attest

import "time"

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
}

// Observer is told every attestation outcome once it is decided and
// audited (boot history, metrics). Observe must not block for long; it
// runs on the exchange's goroutine.
type Observer interface {
	Observe(Attempt)
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

// observe tells the observer, if any, how x ended.
func (s *Server) observe(x *exchange, outcome, check, reason string) {
	if s.observer == nil {
		return
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
	s.observer.Observe(a)
}
