package client

import (
	"context"
	"net/http"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.LinkService = (*Client)(nil)

// RootLink returns how the machine ref names reaches its root storage.
// A server that does not serve the route answers with a plain error.
func (c *Client) RootLink(ctx context.Context, ref string) (*api.RootLink, error) {
	var l api.RootLink
	if err := c.do(ctx, http.MethodGet, machinePath(ref, "/link"), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
