package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// AuditQuery selects audit records; zero fields select everything.
type AuditQuery struct {
	// Machine is a MACHINE argument; a forgotten machine is still found
	// by its full ID or an ID prefix.
	Machine string
	// Since drops records older than this.
	Since time.Time
}

// AuditService queries the audit log and streams decisions as they are
// recorded.
type AuditService interface {
	// Audit returns the records q selects, oldest first.
	Audit(ctx context.Context, q AuditQuery) ([]*AuditEntry, error)
	// Events calls fn with every record written from now on that q
	// selects (q.Since is ignored), until ctx ends, fn fails or the
	// stream is cut (the error says why).
	Events(ctx context.Context, q AuditQuery, fn func(*AuditEntry) error) error
}

// WithAudit serves GET /v1/audit?machine=M&since=RFC3339 (a JSON array)
// and GET /v1/events?machine=M (one JSON AuditEntry per line, as they
// happen, until the client hangs up).
func WithAudit(svc AuditService) Option {
	return func(h *handler) {
		h.mux.HandleFunc("GET /v1/audit", func(w http.ResponseWriter, r *http.Request) {
			q, err := auditQuery(r)
			var es []*AuditEntry
			if err == nil {
				es, err = svc.Audit(r.Context(), q)
			}
			if es == nil {
				es = []*AuditEntry{}
			}
			h.reply(w, r, es, err)
		})
		h.mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
			q, err := auditQuery(r)
			if err != nil {
				h.reply(w, r, nil, err)
				return
			}
			streamEvents(w, r, svc, q)
		})
	}
}

func auditQuery(r *http.Request) (AuditQuery, error) {
	q := AuditQuery{Machine: r.URL.Query().Get("machine")}
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, fmt.Errorf("since %q: want an RFC 3339 time: %w", s, ErrInvalid)
		}
		q.Since = t
	}
	return q, nil
}

// streamEvents writes one JSON line per event and flushes it. Errors
// after the header is sent end the stream with an {"error": ...} line.
func streamEvents(w http.ResponseWriter, r *http.Request, svc AuditService, q AuditQuery) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	flush := func() { rc.Flush() }
	flush() // the client knows it is subscribed
	enc := json.NewEncoder(w)
	err := svc.Events(r.Context(), q, func(e *AuditEntry) error {
		if err := enc.Encode(e); err != nil {
			return err
		}
		flush()
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		enc.Encode(&Error{Message: err.Error(), Code: CodeUnavailable})
		flush()
	}
}
