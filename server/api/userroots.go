package api

import (
	"context"
	"net/http"
	"time"
)

// UserRoot is the lease of a user's per-user root: the machine mounting
// it, one at a time.
type UserRoot struct {
	User        string    `json:"user"`
	MachineID   string    `json:"machine_id"`
	MachineName string    `json:"machine_name,omitempty"`
	Since       time.Time `json:"since"`
	// Boot is the machine's boot count of the release; 0 while a login
	// is being released.
	Boot uint64 `json:"boot,omitempty"`
}

// UserRootService manages users' per-user roots. It is served when
// NewHandler gets WithUserRoots.
type UserRootService interface {
	// UserRoots lists the user roots mounted now (their leases).
	UserRoots(ctx context.Context) ([]UserRoot, error)
	// FreeUserRoot ends user's lease and withdraws the root from the
	// machine holding it (ErrNotFound when none does).
	FreeUserRoot(ctx context.Context, user string) (*UserRoot, error)
	// ResetUserRoot puts user's root back to its image; refused
	// (ErrConflict) while a machine mounts it.
	ResetUserRoot(ctx context.Context, user string) error
	// SnapshotUserRoot saves user's root as name.
	SnapshotUserRoot(ctx context.Context, user, name string) error
	// RollbackUserRoot replaces user's root with snapshot name; refused
	// while a machine mounts it.
	RollbackUserRoot(ctx context.Context, user, name string) error
	// UserRootSnapshots lists the snapshots of user's root.
	UserRootSnapshots(ctx context.Context, user string) ([]Snapshot, error)
}

// WithUserRoots serves svc's routes:
//
//	GET    /v1/userroots                      list leases
//	DELETE /v1/userroots/{user}/lease         free (UserRoot)
//	POST   /v1/userroots/{user}/reset         reset to the image
//	POST   /v1/userroots/{user}/snapshots     snapshot (SnapshotRequest)
//	POST   /v1/userroots/{user}/rollback      roll back (SnapshotRequest)
//	GET    /v1/userroots/{user}/snapshots     list snapshots
func WithUserRoots(svc UserRootService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/userroots", func(w http.ResponseWriter, r *http.Request) {
			us, err := svc.UserRoots(r.Context())
			if us == nil {
				us = []UserRoot{}
			}
			h.reply(w, r, us, err)
		})
		h.mux.HandleFunc("DELETE /v1/userroots/{user}/lease", func(w http.ResponseWriter, r *http.Request) {
			u, err := svc.FreeUserRoot(r.Context(), r.PathValue("user"))
			h.reply(w, r, u, err)
		})
		h.mux.HandleFunc("POST /v1/userroots/{user}/reset", func(w http.ResponseWriter, r *http.Request) {
			h.reply(w, r, nil, svc.ResetUserRoot(r.Context(), r.PathValue("user")))
		})
		snap := func(op func(ctx context.Context, user, name string) error) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				var req SnapshotRequest
				if err := decodeBody(w, r, &req); err != nil {
					h.reply(w, r, nil, err)
					return
				}
				h.reply(w, r, nil, op(r.Context(), r.PathValue("user"), req.Name))
			}
		}
		h.mux.HandleFunc("POST /v1/userroots/{user}/snapshots", snap(svc.SnapshotUserRoot))
		h.mux.HandleFunc("POST /v1/userroots/{user}/rollback", snap(svc.RollbackUserRoot))
		h.mux.HandleFunc("GET /v1/userroots/{user}/snapshots", func(w http.ResponseWriter, r *http.Request) {
			ss, err := svc.UserRootSnapshots(r.Context(), r.PathValue("user"))
			if ss == nil {
				ss = []Snapshot{}
			}
			h.reply(w, r, ss, err)
		})
	}
}
