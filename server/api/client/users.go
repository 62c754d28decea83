package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.UserService = (*Client)(nil)

// Users lists sealroot's own users.
func (c *Client) Users(ctx context.Context) ([]api.User, error) {
	var us []api.User
	err := c.do(ctx, http.MethodGet, "/v1/users", nil, &us)
	return us, err
}

// AddUser creates a user with a password.
func (c *Client) AddUser(ctx context.Context, name string, password []byte) error {
	return c.post(ctx, "/v1/users", api.UserRequest{Name: name, Password: password}, nil)
}

// SetPassword replaces a user's password.
func (c *Client) SetPassword(ctx context.Context, name string, password []byte) error {
	body, err := json.Marshal(api.UserRequest{Password: password})
	if err != nil {
		return err
	}
	defer clear(body)
	return c.do(ctx, http.MethodPut, "/v1/users/"+url.PathEscape(name)+"/password", body, nil)
}

// RemoveUser deletes a user.
func (c *Client) RemoveUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(name), nil, nil)
}
