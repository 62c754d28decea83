package attest

import (
	"context"
	"errors"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// Tunnels installs the WireGuard peer of an attested machine; package
// server/tunnel implements it.
type Tunnels interface {
	// Add makes peerKey machineID's only peer and returns the agent's plan.
	Add(ctx context.Context, machineID string, peerKey []byte) (*wire.TunnelPlan, error)
	// Remove drops machineID's peer, if any.
	Remove(machineID string) error
}

// Root transports: how a machine reaches its root storage.
const (
	// TransportWireGuard requires a tunnel (the default with Tunnels).
	TransportWireGuard = wire.TransportWireGuard
	// TransportPlain lets a machine without a WireGuard key have its
	// credential; its root then runs over the plain LAN (trusted labs).
	TransportPlain = wire.TransportPlain
)

// TransportParam is the RootPlan parameter that overrides the server's
// root transport for one machine.
const TransportParam = wire.TransportParam

// ErrNoTunnelKey refuses an agent that sent no WireGuard key when its root
// transport is a tunnel.
var ErrNoTunnelKey = errors.New("the agent sent no WireGuard key and the root transport is wireguard")

// rootTransport is m's transport: its RootPlan parameter, else the server's.
func (s *Server) rootTransport(m *store.Machine) string {
	if t := m.Root.Params[TransportParam]; t != "" {
		return t
	}
	return s.transport
}

// tunnel installs the machine's peer, or returns nil when there is no
// tunnel (none configured, or a plain transport without a key).
func (x *exchange) tunnel(ctx context.Context) (*wire.TunnelPlan, error) {
	if x.s.tunnels == nil {
		return nil, nil
	}
	if len(x.hello.WireGuardKey) == 0 {
		if x.s.rootTransport(x.machine) == TransportPlain {
			return nil, nil
		}
		return nil, fail("tunnel", ErrNoTunnelKey)
	}
	plan, err := x.s.tunnels.Add(ctx, x.machineID, x.hello.WireGuardKey)
	if err != nil {
		return nil, fail("tunnel", err)
	}
	return plan, nil
}

// dropTunnel removes the machine's peer when it may no longer have one.
func (s *Server) dropTunnel(machineID string) {
	if s.tunnels == nil {
		return
	}
	if err := s.tunnels.Remove(machineID); err != nil {
		s.logger.Error("remove tunnel peer", "machine", machineID, "error", err)
	}
}
