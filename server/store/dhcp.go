package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// DHCPStore keeps the full-mode DHCP leases and reservations; *DB and
// *Etcd implement it. On etcd every server sharing the store sees the
// same leases, and UpdateDHCPLeases makes each lease decision a
// compare-and-set across them.
type DHCPStore interface {
	// DHCPLeases returns every stored lease.
	DHCPLeases(ctx context.Context) ([]DHCPLease, error)
	// PutDHCPLease records l, replacing the record of its address and
	// any other record of its MAC.
	PutDHCPLease(ctx context.Context, l DHCPLease) error
	// UpdateDHCPLeases calls fn with every stored lease and records the
	// leases fn returns (each as PutDHCPLease would) in the same
	// transaction, which commits only if no lease was written since fn's
	// read; otherwise fn runs again on the current leases. fn's error
	// aborts the update and is returned. So a decision fn takes (this
	// address is free, give it to this MAC) holds when it is recorded:
	// one address goes to one MAC, one MAC holds one address.
	UpdateDHCPLeases(ctx context.Context, fn func([]DHCPLease) ([]DHCPLease, error)) error
	// DHCPReservations returns every reservation.
	DHCPReservations(ctx context.Context) ([]DHCPReservation, error)
	// Reserve gives r.MAC the address r.Addr; ErrReserved when another
	// MAC holds the address.
	Reserve(ctx context.Context, r DHCPReservation) (*DHCPReservation, error)
	// Unreserve removes the reservation of mac.
	Unreserve(ctx context.Context, mac string) error
}

var (
	_ DHCPStore = (*DB)(nil)
	_ DHCPStore = (*Etcd)(nil)
)

// leaseJSON encodes a lease to store, refusing one without an IPv4
// address.
func leaseJSON(l DHCPLease) ([]byte, error) {
	if !l.Addr.Is4() {
		return nil, fmt.Errorf("dhcp lease address %v: %w", l.Addr, ErrBadReservation)
	}
	return json.Marshal(l)
}
