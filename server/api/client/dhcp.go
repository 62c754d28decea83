package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.DHCPService = (*Client)(nil)

// Reservations lists the DHCP reservations.
func (c *Client) Reservations(ctx context.Context) ([]api.Reservation, error) {
	var rs []api.Reservation
	err := c.do(ctx, http.MethodGet, "/v1/dhcp/reservations", nil, &rs)
	return rs, err
}

// Reserve gives mac the address addr.
func (c *Client) Reserve(ctx context.Context, mac, addr string) (*api.Reservation, error) {
	var r api.Reservation
	if err := c.post(ctx, "/v1/dhcp/reservations", api.Reservation{MAC: mac, Addr: addr}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Unreserve removes mac's reservation.
func (c *Client) Unreserve(ctx context.Context, mac string) error {
	return c.do(ctx, http.MethodDelete, "/v1/dhcp/reservations/"+url.PathEscape(mac), nil, nil)
}
