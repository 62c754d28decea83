package attest

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/sealroot/sealroot/agent/backoff"
)

// Retry bounds for Attest. Pending machines wait for an operator, so the
// delay grows to a minute; full jitter spreads a boot storm.
const (
	retryMin = 2 * time.Second
	retryMax = 60 * time.Second
	// defaultAttemptTimeout bounds one attestation at one server
	// (TCG-emulated TPMs are slow).
	defaultAttemptTimeout = 2 * time.Minute
)

// Attest attests with the servers in a shuffled order (ShuffleServers),
// one server per attempt, until one succeeds or ctx ends. It prints one
// operator-readable line per failed attempt to console (the machine's
// serial console in the initramfs).
//
// A server that cannot be reached, stops answering or is busy costs one
// attempt (at most Config.AttemptTimeout): the next server is tried at
// once. Only when every server failed in a row, or a server answered with
// a verdict (pending, refused), does Attest wait (retryDelay: the backoff,
// or the time a busy server booked); a server's verdict is then asked
// again of the same server.
func (c *Client) Attest(ctx context.Context, console io.Writer) (*Result, error) {
	order := ShuffleServers(c.cfg.Servers, c.cfg.Rand)
	b := backoff.New(retryMin, retryMax, c.cfg.Rand)
	next, unreachable := 0, 0
	for {
		addr := order[next]
		res, err := c.attempt(ctx, addr)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("attestation: %w (last error: %v)", ctx.Err(), err)
		}
		if errors.Is(err, ErrLocalDisk) {
			return nil, err
		}
		if !isVerdict(err) {
			fmt.Fprintf(console, "sealroot: attestation server %s: %s\n", addr, describe(err))
			next = (next + 1) % len(order)
			if unreachable++; unreachable < len(order) {
				fmt.Fprintf(console, "sealroot: trying attestation server %s\n", order[next])
				continue
			}
		} else {
			fmt.Fprintf(console, "sealroot: %s\n", describe(err))
		}
		unreachable = 0
		delay := retryDelay(b, err)
		fmt.Fprintf(console, "sealroot: retrying attestation in %s\n", delay.Round(100*time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("attestation: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// retryDelay is how long to wait after err. A busy server booked this
// machine a time to come back: keep it, neither earlier (the slot is not
// free yet) nor later (the backoff would leave the booked slot idle and
// pile retries up behind it); a bounded jitter of a tenth keeps machines
// told the same time apart. Otherwise the backoff, at least as long as a
// pending verdict asks.
func retryDelay(b *backoff.Backoff, err error) time.Duration {
	var busy *BusyError
	if errors.As(err, &busy) && busy.RetryAfter > 0 {
		d := min(busy.RetryAfter, retryMax)
		return d + time.Duration(mrand.Int64N(int64(d)/10+1))
	}
	delay := b.Next()
	var p *PendingError
	if errors.As(err, &p) && p.RetryAfter > delay {
		delay = p.RetryAfter
	}
	return delay
}

// attempt runs one attestation at addr within the attempt timeout. The
// time a person spends at the boot menu or a login prompt does not count
// (see clock): the server bounds it (limits.person_timeout), and QUIC
// keep-alives notice a server that dies meanwhile.
func (c *Client) attempt(ctx context.Context, addr string) (*Result, error) {
	timeout := c.cfg.AttemptTimeout
	if timeout <= 0 {
		timeout = defaultAttemptTimeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	k := startClock(timeout, cancel)
	defer k.stop()
	res, err := c.attestAt(ctx, addr, k)
	if err != nil && errors.Is(context.Cause(ctx), errAttemptTimeout) {
		err = fmt.Errorf("%w: %w", errAttemptTimeout, err)
	}
	if err != nil && !isVerdict(err) {
		c.logger.Warn("attestation server failed", "server", addr, "error", err)
	}
	return res, err
}

// errAttemptTimeout ends an attempt whose machine-side time ran out.
var errAttemptTimeout = fmt.Errorf("attempt timed out: %w", context.DeadlineExceeded)

// clock bounds the machine's side of one attempt: it cancels the attempt
// when timeout has passed outside the pauses, and keeps the stream's
// deadline in step. A nil clock bounds nothing.
type clock struct {
	timeout time.Duration
	timer   *time.Timer

	mu sync.Mutex
	st interface{ SetDeadline(time.Time) error } // set by watch
}

func startClock(timeout time.Duration, cancel context.CancelCauseFunc) *clock {
	k := &clock{timeout: timeout}
	k.timer = time.AfterFunc(timeout, func() { cancel(errAttemptTimeout) })
	return k
}

// watch keeps st's deadline at the clock's end.
func (k *clock) watch(st interface{ SetDeadline(time.Time) error }) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.st = st
	st.SetDeadline(time.Now().Add(k.timeout))
}

// pause stops the clock while a person answers the server.
func (k *clock) pause() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.timer.Stop()
	if k.st != nil {
		k.st.SetDeadline(time.Time{})
	}
}

// resume gives the machine a whole timeout again after a person answered.
func (k *clock) resume() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.timer.Reset(k.timeout)
	if k.st != nil {
		k.st.SetDeadline(time.Now().Add(k.timeout))
	}
}

func (k *clock) stop() {
	if k != nil {
		k.timer.Stop()
	}
}

// ShuffleServers returns a copy of servers in a random order drawn from r
// (nil: math/rand/v2's auto-seeded source), so that machines booting
// together spread over the servers and a dead first server is not every
// machine's first try.
func ShuffleServers(servers []string, r *mrand.Rand) []string {
	order := slices.Clone(servers)
	swap := func(i, j int) { order[i], order[j] = order[j], order[i] }
	if r == nil {
		mrand.Shuffle(len(order), swap)
	} else {
		r.Shuffle(len(order), swap)
	}
	return order
}

// describe turns an attestation error into the console line an operator
// acts on.
func describe(err error) string {
	var p *PendingError
	var r *RevokedError
	var f *RefusedError
	var busy *BusyError
	switch {
	case errors.As(err, &busy):
		return "attestation server busy: it booked this machine a time to come back"
	case errors.As(err, &p) && p.NeedsReapproval:
		s := fmt.Sprintf("needs re-approval: machine %s booted a changed state; run `sealroot machine show %s` and `sealroot machine approve %s`",
			p.MachineID, short(p.MachineID), short(p.MachineID))
		if p.Diff != "" {
			s += "\n" + p.Diff
		}
		return s
	case errors.As(err, &p):
		return fmt.Sprintf("waiting for approval: machine fingerprint %s; run `sealroot machine approve %s` on the server", p.MachineID, short(p.MachineID))
	case errors.As(err, &r):
		return "machine revoked by an operator: " + r.Reason + " (ask an operator; nothing will boot until it is forgotten and re-approved)"
	case errors.As(err, &f):
		return fmt.Sprintf("attestation refused, check %q failed: %s", f.Check, f.Reason)
	}
	return "attestation failed: " + err.Error()
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}
