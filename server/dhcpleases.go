package server

import (
	"context"

	"github.com/sealroot/sealroot/server/boot/dhcp"
	"github.com/sealroot/sealroot/server/store"
)

// dhcpLeases keeps full-mode DHCP leases and reservations in the state
// store.
type dhcpLeases struct{ db *store.DB }

var _ dhcp.LeaseStore = dhcpLeases{}

func (d dhcpLeases) Leases() ([]dhcp.Lease, error) {
	ls, err := d.db.DHCPLeases(context.Background())
	out := make([]dhcp.Lease, len(ls))
	for i, l := range ls {
		out[i] = dhcp.Lease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry}
	}
	return out, err
}

func (d dhcpLeases) PutLease(l dhcp.Lease) error {
	return d.db.PutDHCPLease(context.Background(), store.DHCPLease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry})
}

func (d dhcpLeases) Reservations() ([]dhcp.Reservation, error) {
	rs, err := d.db.DHCPReservations(context.Background())
	out := make([]dhcp.Reservation, len(rs))
	for i, r := range rs {
		out[i] = dhcp.Reservation{MAC: r.MAC, Addr: r.Addr}
	}
	return out, err
}
