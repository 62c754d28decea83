package rootnfs

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/roots"
)

// withdrawHeldLocked withdraws the exports of the user roots machineID
// holds, except the root keyed keep.
func (p *Provider) withdrawHeldLocked(ctx context.Context, machineID, keep string) error {
	var errs []error
	for key, st := range p.live {
		if st.Holder == machineID && key != keep {
			errs = append(errs, p.withdrawLocked(ctx, st))
			p.log.Info("user root withdrawn", "root", key, "machine", machineID)
		}
	}
	return errors.Join(errs...)
}

// exportedLocked reports a user root exported to its holder
// (Config.UserRootExported).
func (p *Provider) exportedLocked(st *state) {
	if st.Holder == "" || st.User == "" || p.cfg.UserRootExported == nil {
		return
	}
	p.cfg.UserRootExported(endOf(st))
}

func endOf(st *state) roots.UserRootEnd {
	return roots.UserRootEnd{User: st.User, MachineID: st.Holder, Exchange: st.Exchange}
}

// WithdrawLetGo withdraws the export of e's user root if it is still
// exported to e's boot; with the root exported to another boot it fails
// with roots.ErrNotThatBoot, changing nothing. A root not exported is
// nil. The caller (package letgo) has found the holder's tunnel peer
// silent: NFS has no session to look at, and the overlay stays mounted
// in the server's namespace until ganesha's leases of it expire.
func (p *Provider) WithdrawLetGo(ctx context.Context, e roots.UserRootEnd) error {
	key := roots.UserRootKey(e.User)
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.live[key]
	switch {
	case !ok:
		return nil
	case st.Holder != e.MachineID || st.Exchange != e.Exchange:
		return fmt.Errorf("nfs root of user %s: %w", e.User, roots.ErrNotThatBoot)
	}
	if err := p.withdrawLocked(ctx, st); err != nil {
		return err
	}
	p.log.Info("nfs user root withdrawn: its machine let go", "root", key, "machine", e.MachineID)
	return nil
}

// ServedUserRoots lists the user roots exported now, each as an end not
// known to be logged out: after a restart (Restore) package letgo looks
// at each.
func (p *Provider) ServedUserRoots() []roots.UserRootEnd {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []roots.UserRootEnd
	for _, st := range p.live {
		if st.Holder != "" && st.User != "" {
			out = append(out, endOf(st))
		}
	}
	return out
}
