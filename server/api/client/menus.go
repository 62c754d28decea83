package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.MenuService = (*Client)(nil)

// SetMenu stores the owner's boot menu.
func (c *Client) SetMenu(ctx context.Context, owner api.FileOwner, m api.Menu) (*api.Menu, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("set menu: %w", err)
	}
	var out api.Menu
	if err := c.do(ctx, http.MethodPut, api.MenuPath(owner), body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Menu returns the owner's boot menu.
func (c *Client) Menu(ctx context.Context, owner api.FileOwner) (*api.Menu, error) {
	var out api.Menu
	if err := c.do(ctx, http.MethodGet, api.MenuPath(owner), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteMenu removes the owner's boot menu.
func (c *Client) DeleteMenu(ctx context.Context, owner api.FileOwner) error {
	return c.do(ctx, http.MethodDelete, api.MenuPath(owner), nil, nil)
}
