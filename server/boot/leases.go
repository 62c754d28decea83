package boot

import (
	"context"

	"github.com/sealroot/sealroot/server/boot/dhcp"
	"github.com/sealroot/sealroot/server/store"
)

// StoreLeases keeps full-mode DHCP leases and reservations in the state
// store (shared by every server when it is etcd: each lease decision is a
// compare-and-set there).
type StoreLeases struct{ DB LeaseDB }

// LeaseDB is the part of the state store that keeps DHCP leases;
// *store.DB and *store.Etcd implement it.
type LeaseDB interface {
	UpdateDHCPLeases(ctx context.Context, fn func([]store.DHCPLease) ([]store.DHCPLease, error)) error
	DHCPReservations(ctx context.Context) ([]store.DHCPReservation, error)
}

var _ dhcp.LeaseStore = StoreLeases{}

func (d StoreLeases) UpdateLeases(ctx context.Context, fn func([]dhcp.Lease) ([]dhcp.Lease, error)) error {
	return d.DB.UpdateDHCPLeases(ctx, func(stored []store.DHCPLease) ([]store.DHCPLease, error) {
		ls := make([]dhcp.Lease, len(stored))
		for i, l := range stored {
			ls[i] = dhcp.Lease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry}
		}
		puts, err := fn(ls)
		out := make([]store.DHCPLease, len(puts))
		for i, l := range puts {
			out[i] = store.DHCPLease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry}
		}
		return out, err
	})
}

func (d StoreLeases) Reservations(ctx context.Context) ([]dhcp.Reservation, error) {
	rs, err := d.DB.DHCPReservations(ctx)
	out := make([]dhcp.Reservation, len(rs))
	for i, r := range rs {
		out[i] = dhcp.Reservation{MAC: r.MAC, Addr: r.Addr}
	}
	return out, err
}
