package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Size limits on request bodies.
const (
	MaxSecretSize  = 64 << 10 // a secret value
	maxRequestBody = 16 << 10 // a JSON request
)

// ActorFunc returns ctx carrying actor, the name the service records in
// its audit trail (for example machines.WithActor).
type ActorFunc func(ctx context.Context, actor string) context.Context

// Option configures NewHandler.
type Option func(*handler)

// WithActorFunc makes the handler call f with "operator:<uid>" of the
// peer before each Service call.
func WithActorFunc(f ActorFunc) Option {
	return func(h *handler) { h.actor = f }
}

// RevokeRequest is the body of POST /v1/machines/{ref}/revoke.
type RevokeRequest struct {
	Reason string `json:"reason"`
}

// SecretNames is the body answering GET /v1/machines/{ref}/secrets.
type SecretNames struct {
	Names []string `json:"names"`
}

type handler struct {
	svc     Service
	log     hclog.Logger
	actor   ActorFunc
	selfUID uint32
	mux     *http.ServeMux
}

// NewHandler returns the admin API for svc. It only answers requests that
// arrive through Server, whose peer is root or the server's own user.
// Secret values are never logged.
func NewHandler(svc Service, logger hclog.Logger, opts ...Option) http.Handler {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	h := &handler{
		svc:     svc,
		log:     logger,
		selfUID: uint32(os.Getuid()),
		mux:     http.NewServeMux(),
	}
	for _, o := range opts {
		o(h)
	}
	h.mux.HandleFunc("GET /v1/machines", h.machines)
	h.mux.HandleFunc("GET /v1/machines/{ref}", h.machine)
	h.mux.HandleFunc("POST /v1/machines/{ref}/approve", h.approve)
	h.mux.HandleFunc("POST /v1/machines/{ref}/revoke", h.revoke)
	h.mux.HandleFunc("DELETE /v1/machines/{ref}", h.forget)
	h.mux.HandleFunc("POST /v1/machines/{ref}/forget", h.forgetMachine)
	h.mux.HandleFunc("GET /v1/machines/{ref}/secrets", h.secretNames)
	h.mux.HandleFunc("PUT /v1/machines/{ref}/secrets/{name}", h.setSecret)
	h.mux.HandleFunc("DELETE /v1/machines/{ref}/secrets/{name}", h.deleteSecret)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	uid, err := peerUID(r.Context())
	switch {
	case err != nil:
		h.log.Warn("refused request without peer credentials", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(rec, fmt.Errorf("no peer credentials: %w", ErrForbidden))
	case uid != 0 && uid != h.selfUID:
		h.log.Warn("refused peer", "uid", uid, "method", r.Method, "path", r.URL.Path)
		writeError(rec, fmt.Errorf("uid %d may not use the admin API: %w", uid, ErrForbidden))
	default:
		if h.actor != nil {
			r = r.WithContext(h.actor(r.Context(), "operator:"+strconv.FormatUint(uint64(uid), 10)))
		}
		h.mux.ServeHTTP(rec, r)
	}
	h.log.Debug("request", "method", r.Method, "path", r.URL.Path, "uid", uid,
		"status", rec.status, "duration", time.Since(start))
}

func (h *handler) machines(w http.ResponseWriter, r *http.Request) {
	ms, err := h.svc.Machines(r.Context())
	if ms == nil {
		ms = []*Machine{}
	}
	h.reply(w, r, ms, err)
}

func (h *handler) machine(w http.ResponseWriter, r *http.Request) {
	m, err := h.svc.Machine(r.Context(), r.PathValue("ref"))
	h.reply(w, r, m, err)
}

func (h *handler) approve(w http.ResponseWriter, r *http.Request) {
	var opts ApproveOptions
	if err := decodeBody(w, r, &opts); err != nil {
		h.reply(w, r, nil, err)
		return
	}
	if !opts.Policy.Valid() {
		h.reply(w, r, nil, fmt.Errorf("unknown policy %q: %w", opts.Policy, ErrInvalid))
		return
	}
	m, err := h.svc.Approve(r.Context(), r.PathValue("ref"), opts)
	h.reply(w, r, m, err)
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	if err := decodeBody(w, r, &req); err != nil {
		h.reply(w, r, nil, err)
		return
	}
	m, err := h.svc.Revoke(r.Context(), r.PathValue("ref"), req.Reason)
	h.reply(w, r, m, err)
}

func (h *handler) forget(w http.ResponseWriter, r *http.Request) {
	h.reply(w, r, nil, h.svc.Forget(r.Context(), r.PathValue("ref")))
}

func (h *handler) forgetMachine(w http.ResponseWriter, r *http.Request) {
	var req ForgetRequest
	if err := decodeBody(w, r, &req); err != nil {
		h.reply(w, r, nil, err)
		return
	}
	f, err := h.svc.ForgetMachine(r.Context(), r.PathValue("ref"), req.KeepRoot)
	h.reply(w, r, f, err)
}

func (h *handler) secretNames(w http.ResponseWriter, r *http.Request) {
	names, err := h.svc.SecretNames(r.Context(), r.PathValue("ref"))
	if names == nil {
		names = []string{}
	}
	h.reply(w, r, SecretNames{Names: names}, err)
}

func (h *handler) setSecret(w http.ResponseWriter, r *http.Request) {
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSecretSize))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeErrorStatus(w, http.StatusRequestEntityTooLarge,
			fmt.Errorf("secret is larger than %d bytes: %w", MaxSecretSize, ErrInvalid))
		return
	}
	if err != nil {
		h.reply(w, r, nil, fmt.Errorf("reading secret: %w", ErrInvalid))
		return
	}
	err = h.svc.SetSecret(r.Context(), r.PathValue("ref"), r.PathValue("name"), value)
	clear(value)
	h.reply(w, r, nil, err)
}

func (h *handler) deleteSecret(w http.ResponseWriter, r *http.Request) {
	err := h.svc.DeleteSecret(r.Context(), r.PathValue("ref"), r.PathValue("name"))
	h.reply(w, r, nil, err)
}

// reply writes v as JSON, or 204 if v is nil, or err as an Error.
func (h *handler) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		if code, _ := errorStatus(err); code == CodeInternal || code == CodeUnavailable {
			h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		}
		writeError(w, err)
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		h.log.Warn("writing response", "path", r.URL.Path, "error", err)
	}
}

// decodeBody reads one JSON object of at most maxRequestBody bytes into v.
// An empty body leaves v as is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bad request body: %v: %w", err, ErrInvalid)
	}
	if dec.More() {
		return fmt.Errorf("bad request body: trailing data: %w", ErrInvalid)
	}
	return nil
}

func writeError(w http.ResponseWriter, err error) {
	_, status := errorStatus(err)
	writeErrorStatus(w, status, err)
}

func writeErrorStatus(w http.ResponseWriter, status int, err error) {
	code, _ := errorStatus(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(&Error{Message: err.Error(), Code: code})
}

// statusRecorder remembers the status written, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection (to flush a
// stream).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
