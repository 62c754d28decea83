package client

import (
	"context"

	"github.com/sealroot/sealroot/server/api"
)

var _ api.CaptureService = (*Client)(nil)

// CaptureImage stores the root of the machine ref, which must be powered
// off, as image name.
func (c *Client) CaptureImage(ctx context.Context, name, ref string) (*api.Image, error) {
	var im api.Image
	if err := c.post(ctx, "/v1/images/capture", api.CaptureRequest{Name: name, Machine: ref}, &im); err != nil {
		return nil, err
	}
	return &im, nil
}
