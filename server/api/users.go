package api

import (
	"context"
	"net/http"
	"time"
)

// User is one of sealroot's own users (for per-user roots). The password
// hash never leaves the server.
type User struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Changed time.Time `json:"changed"`
}

// MaxPassword is the longest password accepted, in bytes (users.MaxPassword).
const MaxPassword = 1024

// UserRequest is the body of POST /v1/users and PUT
// /v1/users/{name}/password (Name is taken from the path there).
type UserRequest struct {
	Name     string `json:"name,omitempty"`
	Password []byte `json:"password"`
}

// UserService manages sealroot's own users. It is served next to Service
// when NewHandler gets WithUsers.
type UserService interface {
	Users(ctx context.Context) ([]User, error)
	AddUser(ctx context.Context, name string, password []byte) error
	SetPassword(ctx context.Context, name string, password []byte) error
	RemoveUser(ctx context.Context, name string) error
}

// WithUsers serves svc's routes:
//
//	GET    /v1/users                    list
//	POST   /v1/users                    add (UserRequest)
//	PUT    /v1/users/{name}/password    set the password (UserRequest)
//	DELETE /v1/users/{name}             remove
func WithUsers(svc UserService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/users", func(w http.ResponseWriter, r *http.Request) {
			us, err := svc.Users(r.Context())
			if us == nil {
				us = []User{}
			}
			h.reply(w, r, us, err)
		})
		h.mux.HandleFunc("POST /v1/users", func(w http.ResponseWriter, r *http.Request) {
			var req UserRequest
			if err := decodeBody(w, r, &req); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			defer clear(req.Password)
			h.reply(w, r, nil, svc.AddUser(r.Context(), req.Name, req.Password))
		})
		h.mux.HandleFunc("PUT /v1/users/{name}/password", func(w http.ResponseWriter, r *http.Request) {
			var req UserRequest
			if err := decodeBody(w, r, &req); err != nil {
				h.reply(w, r, nil, err)
				return
			}
			defer clear(req.Password)
			h.reply(w, r, nil, svc.SetPassword(r.Context(), r.PathValue("name"), req.Password))
		})
		h.mux.HandleFunc("DELETE /v1/users/{name}", func(w http.ResponseWriter, r *http.Request) {
			h.reply(w, r, nil, svc.RemoveUser(r.Context(), r.PathValue("name")))
		})
	}
}
