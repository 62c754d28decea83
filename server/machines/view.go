package machines

import (
	"errors"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/policy"
	"github.com/sealroot/sealroot/server/store"
)

// ViewMachine returns the admin API's view of the record m (nil for nil).
// The view shares no memory with m.
func ViewMachine(m *store.Machine) *api.Machine {
	if m == nil {
		return nil
	}
	return &api.Machine{
		ID:           m.ID,
		Name:         m.Name,
		State:        api.State(m.State),
		EKPublic:     clone(m.EKPublic),
		EKCert:       clone(m.EKCert),
		EKCertStatus: m.EKCertStatus,
		AKPublic:     clone(m.AKPublic),
		Hints:        m.Hints,
		Policy:       api.Policy(m.Policy),
		Approved:     viewBootState(m.Approved),
		Reported:     viewBootState(m.Reported),
		Diff:         m.Diff,
		Unmeasured:   unmeasured(m),
		Root:         m.Root,
		Group:        m.Group,
		Menu:         viewMenuOrNil(m.Menu),
		ResetCount:   m.ResetCount,
		RestartCount: m.RestartCount,
		FirstSeen:    m.FirstSeen,
		LastSeen:     m.LastSeen,
		LastAddress:  m.LastAddress,
		BootCount:    m.BootCount,
		Reason:       m.Reason,
		History:      viewHistory(m.History),
	}
}

func viewHistory(h []store.BootAttempt) []api.BootAttempt {
	if h == nil {
		return nil
	}
	out := make([]api.BootAttempt, len(h))
	for i, a := range h {
		out[i] = api.BootAttempt{
			Time:           a.Time,
			Server:         a.Server,
			Remote:         a.Remote,
			Outcome:        a.Outcome,
			Check:          a.Check,
			Reason:         a.Reason,
			AgentVersion:   a.AgentVersion,
			DurationMillis: a.Duration.Milliseconds(),
			Failed:         a.Failed,
			Error:          a.Error,
		}
		for _, st := range a.Stages {
			out[i].Stages = append(out[i].Stages, api.StageTiming{Name: st.Name, Millis: st.Duration.Milliseconds()})
		}
	}
	return out
}

// unmeasured is api.Machine.Unmeasured for m.
func unmeasured(m *store.Machine) string {
	bs := m.Approved
	if bs == nil {
		bs = m.Reported
	}
	if bs == nil {
		return ""
	}
	if gap := policy.MeasurementGap(bs); gap != "" {
		return policy.CheckBootMeasurement + ": " + gap
	}
	return ""
}

// ViewMachines returns the views of ms, in order.
func ViewMachines(ms []*store.Machine) []*api.Machine {
	out := make([]*api.Machine, len(ms))
	for i, m := range ms {
		out[i] = ViewMachine(m)
	}
	return out
}

// ViewGroup returns the admin API's view of the group record g (nil for
// nil).
func ViewGroup(g *store.Group) *api.Group {
	if g == nil {
		return nil
	}
	return &api.Group{Name: g.Name, Root: g.Root}
}

// ViewGroups returns the views of gs, in order.
func ViewGroups(gs []*store.Group) []*api.Group {
	out := make([]*api.Group, len(gs))
	for i, g := range gs {
		out[i] = ViewGroup(g)
	}
	return out
}

func viewBootState(bs *store.BootState) *api.BootState {
	if bs == nil {
		return nil
	}
	out := &api.BootState{At: bs.At}
	if bs.PCRs != nil {
		out.PCRs = make(map[int][]byte, len(bs.PCRs))
		for i, v := range bs.PCRs {
			out.PCRs[i] = clone(v)
		}
	}
	if bs.Events != nil {
		out.Events = make([]api.Event, len(bs.Events))
		for i, e := range bs.Events {
			out.Events[i] = api.Event{
				PCR:         e.PCR,
				Sequence:    e.Sequence,
				Type:        e.Type,
				TypeName:    e.TypeName,
				Digest:      clone(e.Digest),
				Description: e.Description,
			}
		}
	}
	return out
}

// clone copies b, keeping nil nil (so omitempty fields stay omitted).
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// notFoundError is a store.ErrNotFound that also unwraps to
// api.ErrNotFound, so the API answers 404; the message is unchanged.
type notFoundError struct{ err error }

func (e *notFoundError) Error() string   { return e.err.Error() }
func (e *notFoundError) Unwrap() []error { return []error{api.ErrNotFound, e.err} }

// fromStore maps store.ErrNotFound (a machine or secret that went away)
// to api.ErrNotFound; other errors pass unchanged.
func fromStore(err error) error {
	if err != nil && errors.Is(err, store.ErrNotFound) && !errors.Is(err, api.ErrNotFound) {
		return &notFoundError{err: err}
	}
	return err
}
