package basepeer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sealroot/sealroot/server/image"
)

// Limits on what a peer sends.
const (
	// MaxListBytes bounds a peer's version list.
	MaxListBytes = 8 << 20
	// MaxListVersions bounds the versions in it.
	MaxListVersions = 100000
	// FetchIdleTimeout ends a fetch whose peer sends nothing for so long.
	FetchIdleTimeout = time.Minute
)

// ErrNotHeld means the peer does not hold the base asked for.
var ErrNotHeld = errors.New("peer does not hold that base")

// Receiver stores a base once its bytes hash to its digest;
// *image.Store implements it.
type Receiver interface {
	Receive(ctx context.Context, digest string, size int64, r io.Reader) error
}

// Client fetches from peers' base services. It is safe for concurrent
// use; Close drops its idle connections.
type Client struct {
	http *http.Client
	idle time.Duration // FetchIdleTimeout; shorter in tests
}

// NewClient returns a Client with tlsConf (ClientTLS).
func NewClient(tlsConf *tls.Config) *Client {
	return &Client{http: &http.Client{Transport: &http.Transport{
		TLSClientConfig:       tlsConf,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}}, idle: FetchIdleTimeout}
}

// Close drops the idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Images returns the image versions the peer at addr ("ip:port") holds.
func (c *Client) Images(ctx context.Context, addr string) ([]image.Image, error) {
	resp, err := c.get(ctx, addr, "/v1/images")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxListBytes+1))
	if err != nil {
		return nil, fmt.Errorf("peer %s: image list: %w", addr, err)
	}
	ims, err := DecodeImages(b)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", addr, err)
	}
	return ims, nil
}

// Fetch has into store the base with the given digest from the peer at
// addr. into refuses bytes that do not hash to digest.
func (c *Client) Fetch(ctx context.Context, addr, digest string, into Receiver) error {
	if _, err := image.DigestBytes(digest); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	resp, err := c.get(ctx, addr, "/v1/bases/"+digest)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	stalled := fmt.Errorf("base sha256:%s: the peer sent nothing for %v", digest, c.idle)
	idle := time.AfterFunc(c.idle, func() { cancel(stalled) })
	defer idle.Stop()
	if resp.ContentLength < 0 || resp.ContentLength > image.MaxBaseSize {
		return fmt.Errorf("peer %s: base sha256:%s: length %d: %w", addr, digest, resp.ContentLength, image.ErrBaseSize)
	}
	body := readerFunc(func(b []byte) (int, error) {
		idle.Reset(c.idle)
		return resp.Body.Read(b)
	})
	if err := into.Receive(ctx, digest, resp.ContentLength, body); err != nil {
		if cause := context.Cause(ctx); cause == stalled {
			err = cause
		}
		return fmt.Errorf("peer %s: %w", addr, err)
	}
	return nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// get GETs path from the peer at addr and fails unless it answers 200.
func (c *Client) get(ctx context.Context, addr, path string) (*http.Response, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("peer address %q: %w", addr, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", addr, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("peer %s: %s: %w", addr, path, ErrNotHeld)
	}
	resp.Body.Close()
	return nil, fmt.Errorf("peer %s: %s: %s", addr, path, resp.Status)
}

// DecodeImages decodes a peer's version list (GET /v1/images): at most
// MaxListBytes of JSON, at most MaxListVersions versions, each with a
// valid name, a version from 1, a sha256 digest and a size within
// image.MaxBaseSize.
func DecodeImages(b []byte) ([]image.Image, error) {
	if len(b) > MaxListBytes {
		return nil, fmt.Errorf("image list: over %d bytes", MaxListBytes)
	}
	var ims []image.Image
	if err := json.Unmarshal(b, &ims); err != nil {
		return nil, fmt.Errorf("image list: %w", err)
	}
	if len(ims) > MaxListVersions {
		return nil, fmt.Errorf("image list: %d versions, at most %d", len(ims), MaxListVersions)
	}
	for _, im := range ims {
		if _, pin, err := image.ParseRef(im.Name); err != nil || pin != 0 || im.Version < 1 {
			return nil, fmt.Errorf("image list: version %q@v%d: %w", im.Name, im.Version, image.ErrBadName)
		}
		if _, err := image.DigestBytes(im.Digest); err != nil {
			return nil, fmt.Errorf("image list: %s: %w", im.Ref(), err)
		}
		if _, err := image.DigestBytes(im.TreeDigest); err != nil && im.TreeDigest != "" {
			return nil, fmt.Errorf("image list: %s: tree: %w", im.Ref(), err)
		}
		if im.Size < 0 || im.Size > image.MaxBaseSize {
			return nil, fmt.Errorf("image list: %s: size %d: %w", im.Ref(), im.Size, image.ErrBaseSize)
		}
	}
	return ims, nil
}
