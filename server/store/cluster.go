package store

import (
	"context"
	"errors"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// ErrHomeDown is returned by AskHome when the home server is not
// registered (its registration lapsed: it is down or cut off from the
// store) or did not answer in time.
var ErrHomeDown = errors.New("home server is down")

// ServerInfo is one sealroot server of a cluster, as it registers itself
// in the shared store while it runs.
type ServerInfo struct {
	Name string `json:"name"`
	// TunnelEndpoint and TunnelPublicKey are its WireGuard endpoint
	// ("host:port") and public key; empty without a tunnel.
	TunnelEndpoint  string `json:"tunnel_endpoint,omitempty"`
	TunnelPublicKey []byte `json:"tunnel_public_key,omitempty"`
	// StorageAddress is where its roots are served (iSCSI portal, NFS
	// server); "" for none.
	StorageAddress string `json:"storage_address,omitempty"`
	// BaseAddress is where it serves its base images to the other
	// servers ("ip:port", TLS with server certificates, package
	// basepeer); "" for none.
	BaseAddress string    `json:"base_address,omitempty"`
	Started     time.Time `json:"started"`
}

// HomeRequest asks a machine's home server, the one that keeps its root,
// to ready a boot that another server is releasing: install the tunnel
// peer and prepare the root. It carries no secret.
type HomeRequest struct {
	ID        string `json:"id"` // random, one per request
	Home      string `json:"home"`
	From      string `json:"from"` // the attesting server
	MachineID string `json:"machine_id"`
	// Version is the machine record's version the release was decided on;
	// the home refuses when the record moved on.
	Version uint64 `json:"version"`
	// BootCount is the machine's BootCount the release was decided on:
	// the home withdraws what it readied unless a committed release
	// moves it in time (attest.Cluster.CommitWithin).
	BootCount    uint64        `json:"boot_count"`
	WireGuardKey []byte        `json:"wireguard_key,omitempty"` // the agent's per-boot public key
	Plan         wire.RootPlan `json:"plan"`                    // the effective root plan
	RemoteAddr   string        `json:"remote_addr"`
	Key          string        `json:"key,omitempty"` // roots.Request.Key (a per-user root)
}

// HomeAnswer is the home server's answer to a HomeRequest.
type HomeAnswer struct {
	Tunnel *wire.TunnelPlan `json:"tunnel,omitempty"`
	Root   wire.RootPlan    `json:"root"`
	// Secrets is the boot's root secrets (roots.Service.Prepare's),
	// as JSON encrypted with the servers' shared age identity, like
	// every secret in the store; nil for none.
	Secrets []byte `json:"secrets,omitempty"`
	// Check and Error say why the home refused; "" when it did not.
	Check string `json:"check,omitempty"`
	Error string `json:"error,omitempty"`
}

// ClusterStore is a Store several servers share: it keeps the servers'
// registrations, every machine's home server, and carries the requests
// a releasing server sends a machine's home. Etcd implements it.
type ClusterStore interface {
	// RegisterServer keeps info registered until ctx ends, then removes
	// it; a server that stops or loses the store drops out within
	// RegistrationTTL. It returns nil when ctx ends.
	RegisterServer(ctx context.Context, info ServerInfo) error
	// Servers returns the servers registered now, sorted by name.
	Servers(ctx context.Context) ([]ServerInfo, error)
	// ClaimHome returns machineID's home server, making it server if it
	// has none (the first server to ready its root).
	ClaimHome(ctx context.Context, machineID, server string) (string, error)
	// Homes returns every machine's home server, by machine ID.
	Homes(ctx context.Context) (map[string]string, error)
	// ForgetHome removes machineID's home if the machine is gone.
	ForgetHome(ctx context.Context, machineID string) error
	// AskHome sends req to its home server and waits for its answer
	// until ctx ends; ErrHomeDown when the home is not registered or
	// ctx ended first.
	AskHome(ctx context.Context, req HomeRequest) (*HomeAnswer, error)
	// ServeHome answers the requests sent to server name with fn until
	// ctx ends, each in its own goroutine; it returns nil when ctx ends.
	ServeHome(ctx context.Context, name string, fn func(context.Context, HomeRequest) HomeAnswer) error
}

var _ ClusterStore = (*Etcd)(nil)
