package client

import (
	"context"
	"net/http"

	"github.com/sealroot/sealroot/server/api"
)

// BootLogs returns the boot logs the agent of machine ref sent, oldest
// first.
func (c *Client) BootLogs(ctx context.Context, ref string) ([]api.BootLog, error) {
	var out []api.BootLog
	return out, c.do(ctx, http.MethodGet, machinePath(ref, "/log"), nil, &out)
}

// TunnelPeers returns the tunnel's installed peers.
func (c *Client) TunnelPeers(ctx context.Context) ([]api.TunnelPeer, error) {
	var out []api.TunnelPeer
	return out, c.do(ctx, http.MethodGet, "/v1/tunnel/peers", nil, &out)
}

// ISCSISessions returns the logged-in iSCSI sessions.
func (c *Client) ISCSISessions(ctx context.Context) ([]api.ISCSISession, error) {
	var out []api.ISCSISession
	return out, c.do(ctx, http.MethodGet, "/v1/iscsi/sessions", nil, &out)
}

// DHCPLeases returns the full-mode DHCP leases.
func (c *Client) DHCPLeases(ctx context.Context) ([]api.DHCPLease, error) {
	var out []api.DHCPLease
	return out, c.do(ctx, http.MethodGet, "/v1/dhcp/leases", nil, &out)
}

// NFSExports returns the NFS root exports.
func (c *Client) NFSExports(ctx context.Context) ([]api.NFSExport, error) {
	var out []api.NFSExport
	return out, c.do(ctx, http.MethodGet, "/v1/nfs/exports", nil, &out)
}
