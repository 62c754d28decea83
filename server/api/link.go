package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/wire"
)

// RootLink is how a machine reaches its root storage, for
// `sealroot machine show`. Read-only.
type RootLink struct {
	// Transport is the machine's root transport: wire.TransportWireGuard
	// or wire.TransportPlain. It is the machine's RootPlan "transport"
	// parameter, else the server's setting; plain when the server runs no
	// tunnel.
	Transport string `json:"transport"`
	// ServerTransport is the server-wide setting ("" without a tunnel).
	ServerTransport string `json:"server_transport,omitempty"`
	// Tunnel reports whether the server runs a WireGuard tunnel.
	Tunnel bool `json:"tunnel"`
	// Address is the machine's tunnel address; "" when none is allocated.
	Address string `json:"address,omitempty"`
	// Peer reports whether the machine has an installed peer: it attested
	// with a WireGuard key since and is not revoked.
	Peer bool `json:"peer"`
	// LastHandshake is the peer's last WireGuard handshake; zero: none.
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	// Endpoint is where the peer's packets come from; "" before its
	// first handshake. RxBytes and TxBytes count its traffic.
	Endpoint string `json:"endpoint,omitempty"`
	RxBytes  int64  `json:"rx_bytes,omitempty"`
	TxBytes  int64  `json:"tx_bytes,omitempty"`
}

// LinkService reports machines' root links. MACHINE arguments are as for
// Service.
type LinkService interface {
	RootLink(ctx context.Context, ref string) (*RootLink, error)
}

// WithRootLinks serves svc's route too:
//
//	GET /v1/machines/{ref}/link   the machine's RootLink
func WithRootLinks(svc LinkService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/machines/{ref}/link", func(w http.ResponseWriter, r *http.Request) {
			link, err := svc.RootLink(r.Context(), r.PathValue("ref"))
			h.reply(w, r, link, err)
		})
	}
}

// Links is the LinkService of a running server.
type Links struct {
	// Machines resolves MACHINE arguments. Required.
	Machines Service
	// Tunnel is the server's tunnel; nil when it runs none.
	Tunnel *tunnel.Tunnel
	// Transport is the server's root transport setting; "" means
	// wire.TransportWireGuard.
	Transport string
}

// RootLink returns the root link of the machine ref names.
func (l *Links) RootLink(ctx context.Context, ref string) (*RootLink, error) {
	m, err := l.Machines.Machine(ctx, ref)
	if err != nil {
		return nil, err
	}
	if l.Tunnel == nil {
		return &RootLink{Transport: wire.TransportPlain}, nil
	}
	link := &RootLink{Tunnel: true, ServerTransport: l.Transport}
	if link.ServerTransport == "" {
		link.ServerTransport = wire.TransportWireGuard
	}
	link.Transport = link.ServerTransport
	if t := m.Root.Params[wire.TransportParam]; t != "" {
		link.Transport = t
	}
	if a, ok := l.Tunnel.MachineAddr(m.ID); ok {
		link.Address = a.String()
	}
	st, ok, err := l.Tunnel.Status(m.ID)
	if err != nil {
		return nil, fmt.Errorf("root link of %s: %w", m.ID, err)
	}
	link.Peer, link.LastHandshake, link.RxBytes, link.TxBytes = ok, st.LastHandshake, st.RxBytes, st.TxBytes
	if ep, ok, err := l.Tunnel.PeerEndpoint(m.ID); err == nil && ok {
		link.Endpoint = ep.String()
	}
	return link, nil
}
