package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Backup writes the server's backup (a gzipped tar, package backup) to w,
// with the machines' roots when withRoots.
func (c *Client) Backup(ctx context.Context, w io.Writer, withRoots bool) error {
	u := "http://sealroot/v1/backup"
	if withRoots {
		u += "?roots=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET /v1/backup: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		return responseError(resp.StatusCode, data)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET /v1/backup: %w", err)
	}
	return nil
}
