package api

import (
	"context"
	"net/http"
)

// ClusterService changes the secrets keyring (the servers every secret is
// encrypted to) on the running server, which records each change in its
// audit log first. It is served when NewHandler gets WithCluster.
type ClusterService interface {
	// ClusterJoin adds a server's recipient ("age1...") and re-wraps
	// every secret; ErrInvalid for a string that is not a recipient.
	ClusterJoin(ctx context.Context, recipient string) (*ClusterResult, error)
	// ClusterLeave removes a server's recipient and re-wraps every secret
	// without it; ErrNotFound for a recipient that is not a member,
	// ErrInvalid for this server's own.
	ClusterLeave(ctx context.Context, recipient string) (*ClusterResult, error)
	// ClusterRewrap re-wraps every secret to the current members.
	ClusterRewrap(ctx context.Context) (*ClusterResult, error)
}

// ClusterRequest names the server a join or leave is about.
//
//	{"recipient": "age1..."}
type ClusterRequest struct {
	Recipient string `json:"recipient"`
}

// ClusterResult is the keyring after a change and what was re-wrapped.
type ClusterResult struct {
	Version    uint64   `json:"version"`
	Recipients []string `json:"recipients"`
	Rewrapped  int      `json:"rewrapped"`
	Redone     int      `json:"redone"`
}

// WithCluster serves svc's routes too:
//
//	POST /v1/cluster/join    add a recipient (ClusterRequest)
//	POST /v1/cluster/leave   remove a recipient (ClusterRequest)
//	POST /v1/cluster/rewrap  re-wrap every secret
func WithCluster(svc ClusterService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("POST /v1/cluster/join", func(w http.ResponseWriter, r *http.Request) {
			var req ClusterRequest
			if err := decodeBody(w, r, &req); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			res, err := svc.ClusterJoin(r.Context(), req.Recipient)
			h.reply(w, r, res, err)
		})
		h.mux.HandleFunc("POST /v1/cluster/leave", func(w http.ResponseWriter, r *http.Request) {
			var req ClusterRequest
			if err := decodeBody(w, r, &req); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			res, err := svc.ClusterLeave(r.Context(), req.Recipient)
			h.reply(w, r, res, err)
		})
		h.mux.HandleFunc("POST /v1/cluster/rewrap", func(w http.ResponseWriter, r *http.Request) {
			res, err := svc.ClusterRewrap(r.Context())
			h.reply(w, r, res, err)
		})
	}
}
