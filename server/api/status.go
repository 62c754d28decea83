package api

import (
	"context"
	"net/http"
	"time"
)

// Status is the server at a glance, as GET /v1/status answers it.
//
//	{"server": "sr-1", "version": "v0.4.0", "go_version": "go1.26.8",
//	 "started": "...", "ready": true,
//	 "services": [{"name": "attest", "addr": "[::]:4433"}, ...],
//	 "machines": {"approved": 3, "pending": 1},
//	 "in_flight": 0, "unknown_refused": {"event-log": 2},
//	 "event_streams": 1,
//	 "certificates": [{"role": "server", "subject": "...", "not_after": "..."}]}
type Status struct {
	Server    string    `json:"server"` // host name
	Version   string    `json:"version"`
	GoVersion string    `json:"go_version"`
	Started   time.Time `json:"started"`
	// Ready is whether every configured service is up.
	Ready    bool            `json:"ready"`
	Services []ServiceStatus `json:"services"`
	Machines map[State]int   `json:"machines"` // by state
	InFlight int             `json:"in_flight"`
	// UnknownRefused counts refused attestations by identities the
	// server does not know, since it started, by check.
	UnknownRefused map[string]uint64 `json:"unknown_refused,omitempty"`
	// Noise counts connections that ended before naming an identity,
	// by kind (refused, busy, idle, half-open, garbage, abandoned).
	Noise map[string]uint64 `json:"noise,omitempty"`
	// EventStreams counts open `sealroot events --follow` streams.
	EventStreams int                 `json:"event_streams"`
	Certificates []CertificateStatus `json:"certificates"`
	// Served counts what the server serves now; nil from a server that
	// does not report it.
	Served *ServedCounts `json:"served,omitempty"`
	// Cluster is the servers sharing the store; nil for one server.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// ClusterStatus is the servers that share a store, as `sealroot status`
// shows them.
type ClusterStatus struct {
	Self    string          `json:"self"` // this server's name
	Servers []ClusterServer `json:"servers"`
	// Error says why the servers could not be listed (the store is
	// unreachable); "" when they were.
	Error string `json:"error,omitempty"`
}

// ClusterServer is one server of a cluster: registered (up), or only
// named as some machines' home (down: their persistent roots are
// unavailable until it is back).
type ClusterServer struct {
	Name           string `json:"name"`
	Up             bool   `json:"up"`
	TunnelEndpoint string `json:"tunnel_endpoint,omitempty"`
	StorageAddress string `json:"storage_address,omitempty"`
	// Homed counts the machines whose root this server keeps.
	Homed int `json:"homed"`
}

// ServedCounts are the counts behind `sealroot tunnel list`, `iscsi
// sessions`, `dhcp leases` and `nfs exports`.
//
//	{"tunnel_peers": 3, "tunnel_peers_handshaken": 2, "iscsi_sessions": 2,
//	 "dhcp_leases": 5, "nfs_exports": 1, "ganesha": "running", "ganesha_restarts": 0}
type ServedCounts struct {
	TunnelPeers           int `json:"tunnel_peers"`
	TunnelPeersHandshaken int `json:"tunnel_peers_handshaken"`
	ISCSISessions         int `json:"iscsi_sessions"`
	DHCPLeases            int `json:"dhcp_leases"`
	NFSExports            int `json:"nfs_exports"`
	// Ganesha is "running", "down" (restarting) or "" without NFS roots.
	Ganesha         string `json:"ganesha,omitempty"`
	GaneshaRestarts uint64 `json:"ganesha_restarts"`
}

// ServiceStatus is one service the server runs and where.
type ServiceStatus struct {
	Name   string `json:"name"`
	Addr   string `json:"addr,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// CertificateStatus is one of the server's certificates.
type CertificateStatus struct {
	Role     string    `json:"role"` // "server" or "ca"
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

// StatusService reports the server's state.
type StatusService interface {
	Status(ctx context.Context) (*Status, error)
}

// WithStatus serves GET /v1/status.
func WithStatus(svc StatusService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
			st, err := svc.Status(r.Context())
			h.reply(w, r, st, err)
		})
	}
}
