package api

import (
	"context"
	"net/http"
)

// DHCPService manages full-mode DHCP reservations. It is served when
// NewHandler gets WithDHCP.
type DHCPService interface {
	// Reservations lists the MAC to address reservations.
	Reservations(ctx context.Context) ([]Reservation, error)
	// Reserve gives mac the address addr from its next DHCP exchange;
	// ErrConflict when another MAC holds that reservation.
	Reserve(ctx context.Context, mac, addr string) (*Reservation, error)
	// Unreserve removes mac's reservation.
	Unreserve(ctx context.Context, mac string) error
}

// Reservation is a fixed address for a MAC in full DHCP mode.
//
//	{"mac": "52:54:00:12:34:56", "addr": "192.0.2.50"}
type Reservation struct {
	MAC  string `json:"mac"`
	Addr string `json:"addr"`
}

// WithDHCP serves svc's routes too:
//
//	GET    /v1/dhcp/reservations        list
//	POST   /v1/dhcp/reservations        reserve (Reservation)
//	DELETE /v1/dhcp/reservations/{mac}  remove
func WithDHCP(svc DHCPService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/dhcp/reservations", func(w http.ResponseWriter, r *http.Request) {
			rs, err := svc.Reservations(r.Context())
			if rs == nil {
				rs = []Reservation{}
			}
			h.reply(w, r, rs, err)
		})
		h.mux.HandleFunc("POST /v1/dhcp/reservations", func(w http.ResponseWriter, r *http.Request) {
			var req Reservation
			if err := decodeBody(w, r, &req); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			res, err := svc.Reserve(r.Context(), req.MAC, req.Addr)
			h.reply(w, r, res, err)
		})
		h.mux.HandleFunc("DELETE /v1/dhcp/reservations/{mac}", func(w http.ResponseWriter, r *http.Request) {
			h.reply(w, r, nil, svc.Unreserve(r.Context(), r.PathValue("mac")))
		})
	}
}
