package api

import (
	"context"
	"net/http"
)

// CaptureService turns a machine's root into an image. It is served next
// to Service when NewHandler gets WithCapture.
type CaptureService interface {
	// CaptureImage stores the root of the machine ref, which must be
	// powered off, as image name.
	CaptureImage(ctx context.Context, name, ref string) (*Image, error)
}

// CaptureRequest is the body of POST /v1/images/capture.
type CaptureRequest struct {
	Name    string `json:"name"`
	Machine string `json:"machine"`
}

// WithCapture serves svc's route:
//
//	POST /v1/images/capture   capture a machine's root (CaptureRequest)
func WithCapture(svc CaptureService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("POST /v1/images/capture", func(w http.ResponseWriter, r *http.Request) {
			var req CaptureRequest
			if err := decodeBody(w, r, &req); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			im, err := svc.CaptureImage(r.Context(), req.Name, req.Machine)
			h.reply(w, r, im, err)
		})
	}
}
