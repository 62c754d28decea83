package client

import (
	"context"
	"net/http"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.PullService = (*Client)(nil)

// PullImage makes ref available on the server from a peer that holds it.
func (c *Client) PullImage(ctx context.Context, ref string) (*api.PullResult, error) {
	var res api.PullResult
	if err := c.post(ctx, "/v1/images/pull", api.PullRequest{Ref: ref}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// PeerImages lists the image versions each running peer holds.
func (c *Client) PeerImages(ctx context.Context) ([]api.PeerImages, error) {
	var res []api.PeerImages
	err := c.do(ctx, http.MethodGet, "/v1/images/peers", nil, &res)
	return res, err
}
