package netup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/sealroot/sealroot/agent/backoff"
)

// RenewLoop keeps the lease: it renews at T1, retries failures with
// jittered backoff, and starts over with DISCOVER when the server refuses
// (NAK) or the lease expired. It returns ctx.Err() when ctx is done, or nil
// at once for an infinite lease.
func (l *Lease) RenewLoop(ctx context.Context) error {
	b := backoff.New(l.cfg.MinBackoff, l.cfg.MaxBackoff, l.cfg.Rand)
	for {
		l.mu.Lock()
		created, set := l.lease.CreationTime, l.set
		l.mu.Unlock()
		if set.Lease == infinite {
			return nil
		}
		if err := sleepUntil(ctx, created.Add(set.T1)); err != nil {
			return err
		}
		err := l.Renew(ctx)
		if err == nil {
			b.Reset()
			continue
		}
		l.log.Warn("dhcp renewal failed", "error", err, "expires", created.Add(set.Lease))
		if err := b.Sleep(ctx); err != nil {
			return err
		}
	}
}

// Renew renews the lease once (a fresh DISCOVER after a NAK or expiry) and
// reconfigures the link.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	cur, set := l.lease, l.set
	l.mu.Unlock()
	actx, cancel := context.WithTimeout(ctx, l.cfg.AttemptTimeout)
	defer cancel()
	var nl *nclient4.Lease
	var err error
	var nak *nclient4.ErrNak
	if time.Since(cur.CreationTime) < set.Lease {
		nl, err = l.client.Renew(actx, cur, l.modifiers()...)
	}
	if nl == nil && (err == nil || errors.As(err, &nak)) {
		l.log.Info("lease lost, requesting a new one", "nak", err != nil)
		nl, err = l.client.Request(actx, l.modifiers()...)
	}
	if err != nil {
		return fmt.Errorf("dhcp renew on %s: %w", l.Interface(), err)
	}
	return l.apply(nl)
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
