package store

import "context"

// MachineChange is one committed change of a machine record, as a
// MachineWatcher reports it.
type MachineChange struct {
	// MachineID is the machine changed; "" when Resync is set.
	MachineID string
	// Deleted is set when the machine was forgotten.
	Deleted bool
	// State, Version and Reason are the record's after the change.
	State   State
	Version uint64
	Reason  string
	// Resync says changes may have been missed (the feed was cut and
	// resumed): whoever follows the feed re-reads what it cares about.
	Resync bool
}

// MachineWatcher is a Store that reports its machine record changes as
// they commit, those of every server sharing it included: Etcd through an
// etcd watch on the machines prefix, DB in process after each commit.
type MachineWatcher interface {
	// WatchMachines calls fn, one change at a time in commit order, with
	// every change of a machine record (decision fields or bookkeeping
	// kept in the record; not the seen fields or history) committed after
	// it was called, until ctx ends; then it returns nil. fn must not
	// block for long: the feed waits for it.
	WatchMachines(ctx context.Context, fn func(MachineChange)) error
}

var (
	_ MachineWatcher = (*DB)(nil)
	_ MachineWatcher = (*Etcd)(nil)
)

// changeOf is the change that stored m.
func changeOf(m *Machine) MachineChange {
	return MachineChange{MachineID: m.ID, State: m.State, Version: m.Version, Reason: m.Reason}
}
