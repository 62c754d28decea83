package boot

import (
	"context"

	"github.com/sealroot/sealroot/server/boot/dhcp"
	"github.com/sealroot/sealroot/server/store"
)

// StoreLeases keeps full-mode DHCP leases and reservations in the state
// store (shared by every server when it is etcd).
type StoreLeases struct{ DB LeaseDB }

// LeaseDB is the part of the state store that keeps DHCP leases;
// *store.DB and *store.Etcd implement it.
type LeaseDB interface {
	DHCPLeases(ctx context.Context) ([]store.DHCPLease, error)
	PutDHCPLease(ctx context.Context, l store.DHCPLease) error
	DHCPReservations(ctx context.Context) ([]store.DHCPReservation, error)
}

var _ dhcp.LeaseStore = StoreLeases{}

func (d StoreLeases) Leases() ([]dhcp.Lease, error) {
	ls, err := d.DB.DHCPLeases(context.Background())
	out := make([]dhcp.Lease, len(ls))
	for i, l := range ls {
		out[i] = dhcp.Lease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry}
	}
	return out, err
}

func (d StoreLeases) PutLease(l dhcp.Lease) error {
	return d.DB.PutDHCPLease(context.Background(), store.DHCPLease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry})
}

func (d StoreLeases) Reservations() ([]dhcp.Reservation, error) {
	rs, err := d.DB.DHCPReservations(context.Background())
	out := make([]dhcp.Reservation, len(rs))
	for i, r := range rs {
		out[i] = dhcp.Reservation{MAC: r.MAC, Addr: r.Addr}
	}
	return out, err
}
