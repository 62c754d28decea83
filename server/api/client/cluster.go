package client

import (
	"context"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.ClusterService = (*Client)(nil)

// ClusterJoin adds a server's recipient to the secrets keyring.
func (c *Client) ClusterJoin(ctx context.Context, recipient string) (*api.ClusterResult, error) {
	return c.cluster(ctx, "join", &api.ClusterRequest{Recipient: recipient})
}

// ClusterLeave removes a server's recipient from the secrets keyring.
func (c *Client) ClusterLeave(ctx context.Context, recipient string) (*api.ClusterResult, error) {
	return c.cluster(ctx, "leave", &api.ClusterRequest{Recipient: recipient})
}

// ClusterRewrap re-wraps every secret to the current members.
func (c *Client) ClusterRewrap(ctx context.Context) (*api.ClusterResult, error) {
	return c.cluster(ctx, "rewrap", struct{}{})
}

func (c *Client) cluster(ctx context.Context, op string, body any) (*api.ClusterResult, error) {
	var res api.ClusterResult
	if err := c.post(ctx, "/v1/cluster/"+op, body, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
