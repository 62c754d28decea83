package api

import (
	"context"
	"net/http"
	"time"
)

// BootLog is the log an agent sent for one boot (secret values removed by
// the server), as GET /v1/machines/{ref}/log answers it, oldest first.
//
//	{"time": "...", "remote": "10.200.0.7:40112", "failed": "root",
//	 "error": "...", "log": "sealroot: [ok] entropy (0.00s)\n..."}
type BootLog struct {
	Time   time.Time `json:"time"`
	Remote string    `json:"remote,omitempty"`
	Failed string    `json:"failed,omitempty"`
	Error  string    `json:"error,omitempty"`
	Log    string    `json:"log"`
}

// StageTiming is one step of a boot as the agent timed it.
//
//	{"name": "attest", "ms": 812}
type StageTiming struct {
	Name   string `json:"name"`
	Millis int64  `json:"ms"`
}

// TunnelPeer is one installed WireGuard peer of the server's tunnel.
//
//	{"machine_id": "<64 hex>", "name": "nuc-3", "address": "10.200.0.7",
//	 "endpoint": "192.0.2.50:51820", "last_handshake": "...",
//	 "rx_bytes": 1234, "tx_bytes": 5678}
type TunnelPeer struct {
	MachineID     string    `json:"machine_id"`
	Name          string    `json:"name,omitempty"`
	Address       string    `json:"address"`
	Endpoint      string    `json:"endpoint,omitempty"` // "" until the first handshake
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
}

// ISCSISession is one logged-in iSCSI session (discovery sessions are
// not listed).
//
//	{"initiator": "iqn...", "target": "iqn...", "remote": "10.200.0.7:40000",
//	 "machine_id": "<64 hex>", "since": "...", "read_bytes": 1, "written_bytes": 2,
//	 "commands": 3, "errors": 0}
type ISCSISession struct {
	Initiator    string    `json:"initiator"`
	Target       string    `json:"target"`
	Remote       string    `json:"remote"`
	MachineID    string    `json:"machine_id,omitempty"` // when the target is a machine's root
	Since        time.Time `json:"since"`
	ReadBytes    uint64    `json:"read_bytes"`
	WrittenBytes uint64    `json:"written_bytes"`
	Commands     uint64    `json:"commands"`
	// Errors counts commands that ended with a status other than GOOD.
	Errors uint64 `json:"errors"`
}

// DHCPLease is one full-mode DHCP lease.
//
//	{"mac": "52:54:00:12:34:56", "addr": "192.0.2.50", "expiry": "...",
//	 "reserved": false}
type DHCPLease struct {
	MAC    string    `json:"mac"` // "" for an address quarantined after a conflict
	Addr   string    `json:"addr"`
	Expiry time.Time `json:"expiry"`
	// Reserved reports whether the MAC has a reservation for the address.
	Reserved bool `json:"reserved"`
}

// NFSExport is one NFSv4 root export nfs-ganesha serves.
//
//	{"machine_id": "<64 hex>", "path": "/exports/<id>", "client": "10.200.0.7"}
type NFSExport struct {
	MachineID string `json:"machine_id"`
	Path      string `json:"path"`
	Client    string `json:"client,omitempty"`
}

// ObserveService reports what the server serves right now. Lists are
// never nil.
type ObserveService interface {
	// BootLogs returns the machine's stored boot logs, oldest first.
	BootLogs(ctx context.Context, ref string) ([]BootLog, error)
	TunnelPeers(ctx context.Context) ([]TunnelPeer, error)
	ISCSISessions(ctx context.Context) ([]ISCSISession, error)
	DHCPLeases(ctx context.Context) ([]DHCPLease, error)
	NFSExports(ctx context.Context) ([]NFSExport, error)
}

// WithObserve serves svc's routes too:
//
//	GET /v1/machines/{ref}/log  the machine's boot logs
//	GET /v1/tunnel/peers        installed WireGuard peers
//	GET /v1/iscsi/sessions      logged-in iSCSI sessions
//	GET /v1/dhcp/leases         full-mode DHCP leases
//	GET /v1/nfs/exports         NFS root exports
func WithObserve(svc ObserveService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/machines/{ref}/log", func(w http.ResponseWriter, r *http.Request) {
			logs, err := svc.BootLogs(r.Context(), r.PathValue("ref"))
			h.reply(w, r, logs, err)
		})
		h.mux.HandleFunc("GET /v1/tunnel/peers", func(w http.ResponseWriter, r *http.Request) {
			ps, err := svc.TunnelPeers(r.Context())
			h.reply(w, r, ps, err)
		})
		h.mux.HandleFunc("GET /v1/iscsi/sessions", func(w http.ResponseWriter, r *http.Request) {
			ss, err := svc.ISCSISessions(r.Context())
			h.reply(w, r, ss, err)
		})
		h.mux.HandleFunc("GET /v1/dhcp/leases", func(w http.ResponseWriter, r *http.Request) {
			ls, err := svc.DHCPLeases(r.Context())
			h.reply(w, r, ls, err)
		})
		h.mux.HandleFunc("GET /v1/nfs/exports", func(w http.ResponseWriter, r *http.Request) {
			es, err := svc.NFSExports(r.Context())
			h.reply(w, r, es, err)
		})
	}
}
