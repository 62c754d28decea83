package machines

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
)

// dhcpStore is the part of the state store that keeps DHCP reservations;
// *store.DB implements it.
type dhcpStore interface {
	DHCPReservations(ctx context.Context) ([]store.DHCPReservation, error)
	Reserve(ctx context.Context, r store.DHCPReservation) (*store.DHCPReservation, error)
	Unreserve(ctx context.Context, mac string) error
}

var _ api.DHCPService = (*Manager)(nil)

func (m *Manager) dhcp() (dhcpStore, error) {
	d, ok := m.store.(dhcpStore)
	if !ok {
		return nil, fmt.Errorf("%w: this store keeps no DHCP reservations", api.ErrUnavailable)
	}
	return d, nil
}

// Reservations lists the DHCP reservations.
func (m *Manager) Reservations(ctx context.Context) ([]api.Reservation, error) {
	d, err := m.dhcp()
	if err != nil {
		return nil, err
	}
	rs, err := d.DHCPReservations(ctx)
	out := make([]api.Reservation, len(rs))
	for i, r := range rs {
		out[i] = api.Reservation{MAC: r.MAC, Addr: r.Addr.String()}
	}
	return out, err
}

// Reserve gives mac the address addr, audited first.
func (m *Manager) Reserve(ctx context.Context, mac, addr string) (*api.Reservation, error) {
	reason := fmt.Sprintf("dhcp reserve %s %s", mac, addr)
	d, err := m.dhcp()
	var a netip.Addr
	if err == nil {
		if a, err = netip.ParseAddr(addr); err != nil || !a.Is4() {
			err = fmt.Errorf("address %q: %w: want an IPv4 address", addr, api.ErrInvalid)
		}
	}
	if err != nil {
		m.record(ctx, "dhcp-reserve", "", reason, err)
		return nil, err
	}
	var r *store.DHCPReservation
	err = m.change(ctx, "dhcp-reserve", "", reason, func() (err error) {
		r, err = d.Reserve(ctx, store.DHCPReservation{MAC: mac, Addr: a})
		return dhcpErr(err)
	})
	if err != nil {
		return nil, err
	}
	return &api.Reservation{MAC: r.MAC, Addr: r.Addr.String()}, nil
}

// Unreserve removes mac's reservation, audited first.
func (m *Manager) Unreserve(ctx context.Context, mac string) error {
	d, err := m.dhcp()
	if err != nil {
		return err
	}
	return m.change(ctx, "dhcp-unreserve", "", "dhcp unreserve "+mac, func() error { return dhcpErr(d.Unreserve(ctx, mac)) })
}

func dhcpErr(err error) error {
	switch {
	case errors.Is(err, store.ErrReserved):
		return &apiError{kind: api.ErrConflict, err: err}
	case errors.Is(err, store.ErrBadReservation):
		return &apiError{kind: api.ErrInvalid, err: err}
	}
	return toAPI(err)
}
