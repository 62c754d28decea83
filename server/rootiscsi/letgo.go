package rootiscsi

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/roots"
)

// UserRootEnd reports that a session of a user's root ended
// (roots.UserRootEnd).
type UserRootEnd = roots.UserRootEnd

// ErrNotThatBoot means the user's root is no longer served to the boot a
// let-go names (roots.ErrNotThatBoot).
var ErrNotThatBoot = roots.ErrNotThatBoot

// sessionEnded is the SessionEnded hook of rec's target: nil for a
// machine's own root or without Config.UserRootEnded.
func (p *Provider) sessionEnded(rec *record) func(bool) {
	report := p.cfg.UserRootEnded
	if rec.Holder == "" || rec.User == "" || report == nil {
		return nil
	}
	e := UserRootEnd{User: rec.User, MachineID: rec.Holder, Exchange: rec.Exchange}
	return func(loggedOut bool) {
		e := e
		e.LoggedOut = loggedOut
		report(e)
	}
}

// WithdrawLetGo withdraws the target of e's user root, as ReleaseIdle
// does, if it is still served to e's boot and no initiator is logged in
// to it, atomically with those checks: with a session open it fails with
// roots.ErrInUse, and with the root served to another boot with
// ErrNotThatBoot, changing nothing. A root not served at all is nil.
func (p *Provider) WithdrawLetGo(_ context.Context, e UserRootEnd) error {
	key := roots.UserRootKey(e.User)
	p.mu.Lock()
	s := p.machines[key]
	switch {
	case s == nil:
		p.mu.Unlock()
		return nil
	case s.rec.Holder != e.MachineID || s.rec.Exchange != e.Exchange:
		p.mu.Unlock()
		return fmt.Errorf("root of user %s: %w", e.User, ErrNotThatBoot)
	case !s.srv.RemoveTargetIfIdle(TargetIQN(key)):
		p.mu.Unlock()
		return fmt.Errorf("root of user %s: an iSCSI session is logged in to it: %w", e.User, roots.ErrInUse)
	}
	delete(p.machines, key)
	p.mu.Unlock()
	err := s.lun.Close()
	p.log.Info("iscsi user root withdrawn: its machine let go", "root", key, "machine", e.MachineID, "logged_out", e.LoggedOut)
	return errors.Join(err, p.remove(key))
}

// ServedUserRoots lists the user roots served now, each as the end of a
// session that is not known to be logged out: after a restart (Restore)
// nothing else reports a machine that was off meanwhile.
func (p *Provider) ServedUserRoots() []UserRootEnd {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []UserRootEnd
	for _, s := range p.machines {
		if s.rec.Holder != "" && s.rec.User != "" {
			out = append(out, UserRootEnd{User: s.rec.User, MachineID: s.rec.Holder, Exchange: s.rec.Exchange})
		}
	}
	return out
}
