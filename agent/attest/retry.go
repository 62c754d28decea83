package attest

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"time"

	"github.com/sealroot/sealroot/agent/backoff"
)

// Retry bounds for Attest. Pending machines wait for an operator, so the
// delay grows to a minute; full jitter spreads a boot storm.
const (
	retryMin = 2 * time.Second
	retryMax = 60 * time.Second
	// attemptTimeout bounds one attestation (TCG-emulated TPMs are slow).
	attemptTimeout = 2 * time.Minute
)

// Attest retries AttestOnce with jittered exponential backoff until it
// succeeds or ctx ends, printing one operator-readable line per failed try
// to console (the machine's serial console in the initramfs).
func (c *Client) Attest(ctx context.Context, console io.Writer) (*Result, error) {
	b := backoff.New(retryMin, retryMax, nil)
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		res, err := c.AttestOnce(actx)
		cancel()
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("attestation: %w (last error: %v)", ctx.Err(), err)
		}
		if errors.Is(err, ErrLocalDisk) {
			return nil, err
		}
		delay := retryDelay(b, err)
		fmt.Fprintf(console, "sealroot: %s\n", describe(err))
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
