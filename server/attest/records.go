package attest

import (
	"context"

	"github.com/sealroot/sealroot/server/store"
)

// recordStore is a store that reads and updates a machine's record
// without its boot history (store.DB does). No attestation decision reads
// the history, and a machine that boots often has the last
// store.MaxHistory attempts: read, copied and compared on every update
// otherwise.
type recordStore interface {
	MachineRecord(ctx context.Context, id string) (*store.Machine, error)
	UpdateMachineRecord(ctx context.Context, id string, fn func(*store.Machine) error) (*store.Machine, error)
}

// machine returns machine id's record, without its history when the
// store can leave it out.
func (s *Server) machine(ctx context.Context, id string) (*store.Machine, error) {
	if rs, ok := s.store.(recordStore); ok {
		return rs.MachineRecord(ctx, id)
	}
	return s.store.Machine(ctx, id)
}

// updateMachine is store.UpdateMachine for updates that leave the
// history alone, without reading it when the store can leave it out.
func (s *Server) updateMachine(ctx context.Context, id string, fn func(*store.Machine) error) (*store.Machine, error) {
	if rs, ok := s.store.(recordStore); ok {
		return rs.UpdateMachineRecord(ctx, id, fn)
	}
	return s.store.UpdateMachine(ctx, id, fn)
}
