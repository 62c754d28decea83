// Package client is the Go client of sealroot's admin API (package api)
// over its Unix socket; the sealroot CLI uses it. Client implements
// api.Service, and errors from the server unwrap to the api sentinel
// errors, so errors.Is(err, api.ErrNotFound) works as it does in-process.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"github.com/sealroot/sealroot/server/api"
)

// maxResponse bounds the size of a response body.
const maxResponse = 64 << 20

var _ api.Service = (*Client)(nil)

// UnreachableError means nothing listens on the socket.
type UnreachableError struct {
	Path string
	Err  error // the dial error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach sealroot at %s: is \"sealroot serve\" running?", e.Path)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Client talks to the admin API on one Unix socket. It is safe for
// concurrent use; its zero value is not usable, call New.
type Client struct {
	path string
	hc   *http.Client
}

// New returns a client of the admin API listening on socketPath. It does
// not connect until the first call.
func New(socketPath string) *Client {
	c := &Client{path: socketPath}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext:       c.dial,
		DisableKeepAlives: true,
	}}
	return c
}

func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, &UnreachableError{Path: c.path, Err: err}
	}
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err // drop the repeated "dial unix <path>"
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("connecting to sealroot at %s: %w (the admin API is for root)", c.path, err)
		}
		return nil, fmt.Errorf("connecting to sealroot at %s: %w", c.path, err)
	}
	return conn, nil
}

// Machines lists every machine.
func (c *Client) Machines(ctx context.Context) ([]*api.Machine, error) {
	var ms []*api.Machine
	err := c.do(ctx, http.MethodGet, "/v1/machines", nil, &ms)
	return ms, err
}

// Machine returns the machine ref names.
func (c *Client) Machine(ctx context.Context, ref string) (*api.Machine, error) {
	var m api.Machine
	if err := c.do(ctx, http.MethodGet, machinePath(ref, ""), nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Approve approves the machine ref names.
func (c *Client) Approve(ctx context.Context, ref string, opts api.ApproveOptions) (*api.Machine, error) {
	return c.machineOp(ctx, machinePath(ref, "/approve"), opts)
}

// Revoke revokes the machine ref names.
func (c *Client) Revoke(ctx context.Context, ref, reason string) (*api.Machine, error) {
	return c.machineOp(ctx, machinePath(ref, "/revoke"), api.RevokeRequest{Reason: reason})
}

func (c *Client) machineOp(ctx context.Context, path string, req any) (*api.Machine, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var m api.Machine
	if err := c.do(ctx, http.MethodPost, path, body, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Forget deletes the machine ref names and its secrets.
func (c *Client) Forget(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, machinePath(ref, ""), nil, nil)
}

// SetSecret stores a secret for the machine ref names.
func (c *Client) SetSecret(ctx context.Context, ref, name string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return c.do(ctx, http.MethodPut, secretPath(ref, name), value, nil)
}

// SecretNames lists the names of the machine's secrets.
func (c *Client) SecretNames(ctx context.Context, ref string) ([]string, error) {
	var resp api.SecretNames
	err := c.do(ctx, http.MethodGet, machinePath(ref, "/secrets"), nil, &resp)
	return resp.Names, err
}

// DeleteSecret deletes one of the machine's secrets.
func (c *Client) DeleteSecret(ctx context.Context, ref, name string) error {
	return c.do(ctx, http.MethodDelete, secretPath(ref, name), nil, nil)
}

func machinePath(ref, suffix string) string {
	return "/v1/machines/" + url.PathEscape(ref) + suffix
}

func secretPath(ref, name string) string {
	return machinePath(ref, "/secrets/"+url.PathEscape(name))
}
