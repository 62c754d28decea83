package api

import (
	"context"
	"net/http"
)

// PullService fetches images from the other servers sharing the store.
// It is served next to Service when NewHandler gets WithPull.
type PullService interface {
	// PullImage makes ref available on this server: a base
	// (sha256:HEX) or a version (NAME@vN, or NAME for the highest
	// version a running peer holds). The base is fetched from a running
	// peer unless it is here and kept only if its bytes hash to its
	// digest; the version keeps its number. ErrNotFound when no running
	// peer holds it, ErrConflict when the version names another base
	// here.
	PullImage(ctx context.Context, ref string) (*PullResult, error)
	// PeerImages lists the image versions each running peer serving
	// bases holds (each server keeps its own image store).
	PeerImages(ctx context.Context) ([]PeerImages, error)
}

// PeerImages is what a running server sharing the store holds; an
// element of the body answering GET /v1/images/peers.
type PeerImages struct {
	Server string  `json:"server"`
	Images []Image `json:"images"`
	// Error says why the server did not list its images.
	Error string `json:"error,omitempty"`
}

// PullRequest is the body of POST /v1/images/pull.
type PullRequest struct {
	Ref string `json:"ref"`
}

// PullResult answers POST /v1/images/pull.
type PullResult struct {
	Digest string `json:"digest"`
	// From is the peer the base came from; "" when it was here already.
	From string `json:"from,omitempty"`
	// Versions are the image versions naming the base recorded here.
	Versions []Image `json:"versions"`
}

// WithPull serves svc's route:
//
//	POST /v1/images/pull   fetch an image from a peer (PullRequest)
//	GET  /v1/images/peers  the peers' images ([]PeerImages)
func WithPull(svc PullService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/images/peers", func(w http.ResponseWriter, r *http.Request) {
			res, err := svc.PeerImages(r.Context())
			if res == nil && err == nil {
				res = []PeerImages{}
			}
			h.reply(w, r, res, err)
		})
		h.mux.HandleFunc("POST /v1/images/pull", func(w http.ResponseWriter, r *http.Request) {
			var req PullRequest
			if err := decodeBody(w, r, &req); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			res, err := svc.PullImage(r.Context(), req.Ref)
			h.reply(w, r, res, err)
		})
	}
}
