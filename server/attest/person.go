package attest

import (
	"context"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// Waiting for a person
//
// Some steps of an exchange need a person at the machine's console: a
// login for a per-user root, a choice in a boot menu. A person takes
// seconds or minutes, so an exchange that waits for one must not hold an
// exchange slot (ExchangesPerSource, MaxSessions) the while: a few
// machines left at their login prompt would keep the rest from booting.
// askPerson gives the slots up, holds one of a separate, small bound
// instead (WaitingPerSource, MaxWaiting) for at most PersonTimeout, and
// takes the slots again when the answer's first byte arrives (or refuses
// with "busy", and the agent starts again).
//
// What the exchange decides after the wait is decided against the
// current record in the transaction that records it (commit compares
// the machine's Version read at hello), so an operator's change during
// the wait refuses the release; a revoke or forget ends the wait at once
// (live.go).

// errWaitBusy refuses a wait when its source, or the server, has as many
// exchanges waiting for a person as it may.
var errWaitBusy = &Failure{Check: "busy", Reason: "server busy: too many machines waiting for a person, retry later"}

// askPerson sends prompt to the agent, which asks the person at the
// machine's console, and returns the agent's answer: any message, the
// caller checks its type. While the person answers x holds no exchange
// slot, only a waiting one (see above). A revoke or forget during the
// wait returns that refusal; a person who does not answer within
// PersonTimeout ends the exchange as gone (timeout).
func (x *exchange) askPerson(ctx context.Context, prompt wire.Message) (wire.Message, error) {
	s := x.s
	if !s.sources.addWaiting(x.src) {
		return nil, errWaitBusy
	}
	waiting := true
	stopWaiting := func() {
		if waiting {
			waiting = false
			s.sources.dropWaiting(x.src)
		}
	}
	defer stopWaiting()
	x.dropSlots()
	x.st.SetWriteDeadline(time.Now().Add(s.limits.FrameTimeout))
	if err := wire.Write(x.st, prompt); err != nil {
		return nil, &goneError{err: err}
	}
	if err := x.ended(); err != nil {
		return nil, err
	}
	answered := func() error {
		stopWaiting()
		return x.takeSlots(ctx, time.Now().Add(s.limits.FrameTimeout))
	}
	m, err := s.readMessage(x.st, time.Now().Add(s.limits.PersonTimeout), time.Time{}, answered)
	if e := x.ended(); e != nil {
		return nil, e // the wait was ended by an operator
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Waiting returns how many exchanges wait for a person.
func (s *Server) Waiting() int { return s.sources.waitingCount() }
