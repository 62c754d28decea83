package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/sealroot/sealroot/server/api"
)

// maxEventLine bounds one line of the event stream.
const maxEventLine = 1 << 20

var _ api.AuditService = (*Client)(nil)

// Audit returns the audit records q selects, oldest first.
func (c *Client) Audit(ctx context.Context, q api.AuditQuery) ([]*api.AuditEntry, error) {
	var es []*api.AuditEntry
	err := c.do(ctx, http.MethodGet, "/v1/audit"+auditParams(q), nil, &es)
	return es, err
}

func auditParams(q api.AuditQuery) string {
	v := url.Values{}
	if q.Machine != "" {
		v.Set("machine", q.Machine)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339))
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// Events calls fn with each decision the server records from now on,
// until ctx ends (it then returns nil), fn fails, or the server ends the
// stream (the error says why). ready, if not nil, is called once the
// server has subscribed this stream.
func (c *Client) Events(ctx context.Context, q api.AuditQuery, fn func(*api.AuditEntry) error) error {
	return c.EventsReady(ctx, q, nil, fn)
}

// EventsReady is Events calling ready once the subscription is open.
func (c *Client) EventsReady(ctx context.Context, q api.AuditQuery, ready func(), fn func(*api.AuditEntry) error) error {
	q.Since = time.Time{}
	path := "/v1/events" + auditParams(q)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://sealroot"+path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) {
			return ue
		}
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		return responseError(resp.StatusCode, data)
	}
	if ready != nil {
		ready()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, maxEventLine)
	for sc.Scan() {
		var line struct {
			api.AuditEntry
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		if line.Error != "" {
			return &api.Error{Message: line.Error, Code: line.Code}
		}
		if err := fn(&line.AuditEntry); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	return errors.New("event stream: the server ended it")
}

// Status returns the server's state at a glance.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var st api.Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
