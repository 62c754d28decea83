package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.FileService = (*Client)(nil)

// SetFile adds or replaces the owner's file at f.Path.
func (c *Client) SetFile(ctx context.Context, owner api.FileOwner, f api.File) error {
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("set file: %w", err)
	}
	return c.do(ctx, http.MethodPut, api.FilesPath(owner), body, nil)
}

// Files lists the owner's files, without content.
func (c *Client) Files(ctx context.Context, owner api.FileOwner) ([]api.File, error) {
	var fs []api.File
	err := c.do(ctx, http.MethodGet, api.FilesPath(owner), nil, &fs)
	return fs, err
}

// DeleteFile removes the owner's file at path.
func (c *Client) DeleteFile(ctx context.Context, owner api.FileOwner, path string) error {
	return c.do(ctx, http.MethodDelete, api.FilesPath(owner)+"?path="+url.QueryEscape(path), nil, nil)
}
