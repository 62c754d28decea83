package machines

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/basepeer"
	"github.com/sealroot/sealroot/server/image"
)

var _ api.PullService = (*Manager)(nil)

// Puller fetches images from peers; *basepeer.Puller implements it.
type Puller interface {
	Pull(ctx context.Context, ref string) (*basepeer.Pulled, error)
	PeerImages(ctx context.Context) ([]basepeer.PeerImages, error)
}

// PullImage makes ref (sha256:HEX, NAME or NAME@vN) available on this
// server from a running peer that holds it.
func (m *Manager) PullImage(ctx context.Context, ref string) (*api.PullResult, error) {
	if m.puller == nil {
		err := fmt.Errorf("image pull: this server shares no store with other servers (store backend etcd): %w", api.ErrInvalid)
		m.record(ctx, "image-pull", "", "image "+ref, err)
		return nil, err
	}
	var pulled *basepeer.Pulled
	err := m.change(ctx, "image-pull", "", "image "+ref, func() (err error) {
		pulled, err = m.puller.Pull(ctx, ref)
		return pullToAPI(err)
	})
	if pulled == nil {
		return nil, err
	}
	res := &api.PullResult{Digest: pulled.Digest, From: pulled.From, Versions: []api.Image{}}
	for _, im := range pulled.Versions {
		res.Versions = append(res.Versions, imageView(im))
	}
	return res, err
}

// PeerImages lists the image versions each running peer serving bases
// holds.
func (m *Manager) PeerImages(ctx context.Context) ([]api.PeerImages, error) {
	if m.puller == nil {
		return nil, fmt.Errorf("image list --peers: this server shares no store with other servers (store backend etcd): %w", api.ErrInvalid)
	}
	all, err := m.puller.PeerImages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.PeerImages, len(all))
	for i, pi := range all {
		out[i] = api.PeerImages{Server: pi.Server, Images: []api.Image{}}
		if pi.Err != nil {
			out[i].Error = pi.Err.Error()
		}
		for _, im := range pi.Images {
			out[i].Images = append(out[i].Images, imageView(im))
		}
	}
	return out, nil
}

func pullToAPI(err error) error {
	switch {
	case errors.Is(err, basepeer.ErrNotOnPeers):
		return &apiError{kind: api.ErrNotFound, err: err}
	case errors.Is(err, image.ErrVersionConflict):
		return &apiError{kind: api.ErrConflict, err: err}
	}
	return toAPI(err)
}
