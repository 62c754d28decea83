package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.UserRootService = (*Client)(nil)

func userRootPath(user, rest string) string { return "/v1/userroots/" + url.PathEscape(user) + rest }

// UserRoots lists the user roots mounted now.
func (c *Client) UserRoots(ctx context.Context) ([]api.UserRoot, error) {
	var us []api.UserRoot
	err := c.do(ctx, http.MethodGet, "/v1/userroots", nil, &us)
	return us, err
}

// FreeUserRoot ends user's lease.
func (c *Client) FreeUserRoot(ctx context.Context, user string) (*api.UserRoot, error) {
	var u api.UserRoot
	if err := c.do(ctx, http.MethodDelete, userRootPath(user, "/lease"), nil, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// ResetUserRoot puts user's root back to its image.
func (c *Client) ResetUserRoot(ctx context.Context, user string) error {
	return c.post(ctx, userRootPath(user, "/reset"), struct{}{}, nil)
}

// SnapshotUserRoot saves user's root as name.
func (c *Client) SnapshotUserRoot(ctx context.Context, user, name string) error {
	return c.post(ctx, userRootPath(user, "/snapshots"), api.SnapshotRequest{Name: name}, nil)
}

// RollbackUserRoot replaces user's root with snapshot name.
func (c *Client) RollbackUserRoot(ctx context.Context, user, name string) error {
	return c.post(ctx, userRootPath(user, "/rollback"), api.SnapshotRequest{Name: name}, nil)
}

// UserRootSnapshots lists the snapshots of user's root.
func (c *Client) UserRootSnapshots(ctx context.Context, user string) ([]api.Snapshot, error) {
	var ss []api.Snapshot
	err := c.do(ctx, http.MethodGet, userRootPath(user, "/snapshots"), nil, &ss)
	return ss, err
}
