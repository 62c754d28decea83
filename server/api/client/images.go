package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

var _ api.ImageService = (*Client)(nil)

// Images lists the named images.
func (c *Client) Images(ctx context.Context) ([]api.Image, error) {
	var ims []api.Image
	err := c.do(ctx, http.MethodGet, "/v1/images", nil, &ims)
	return ims, err
}

// ImportImage imports source (a path on the server's host) as name.
func (c *Client) ImportImage(ctx context.Context, name, source string) (*api.Image, error) {
	var im api.Image
	if err := c.post(ctx, "/v1/images", api.ImportRequest{Name: name, Source: source}, &im); err != nil {
		return nil, err
	}
	return &im, nil
}

// RemoveImage forgets the image version or name ref.
func (c *Client) RemoveImage(ctx context.Context, ref string) ([]api.Image, error) {
	var res api.RemoveResult
	err := c.do(ctx, http.MethodDelete, "/v1/images/"+url.PathEscape(ref), nil, &res)
	return res.Removed, err
}

// ForgetMachine forgets the machine and deletes its roots unless
// keepRoot.
func (c *Client) ForgetMachine(ctx context.Context, ref string, keepRoot bool) (*api.Forgotten, error) {
	var f api.Forgotten
	if err := c.post(ctx, machinePath(ref, "/forget"), api.ForgetRequest{KeepRoot: keepRoot}, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// Snapshots lists the machine's snapshots.
func (c *Client) Snapshots(ctx context.Context, ref string) ([]api.Snapshot, error) {
	var ss []api.Snapshot
	err := c.do(ctx, http.MethodGet, machinePath(ref, "/volume/snapshots"), nil, &ss)
	return ss, err
}

// DeleteSnapshot removes the machine's snapshot name.
func (c *Client) DeleteSnapshot(ctx context.Context, ref, name string) error {
	return c.do(ctx, http.MethodDelete, machinePath(ref, "/volume/snapshots/"+url.PathEscape(name)), nil, nil)
}

// UpgradeRoot moves the machine's root to image, keeping the old root as
// a snapshot.
func (c *Client) UpgradeRoot(ctx context.Context, ref, image string) (*api.Upgrade, error) {
	var u api.Upgrade
	if err := c.post(ctx, machinePath(ref, "/root/upgrade"), api.UpgradeRequest{Image: image}, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// Rollout moves the group's machines to req.Image, or says what it would
// do (req.DryRun).
func (c *Client) Rollout(ctx context.Context, group string, req api.RolloutRequest) (*api.Rollout, error) {
	var ro api.Rollout
	if err := c.post(ctx, "/v1/groups/"+url.PathEscape(group)+"/rollout", req, &ro); err != nil {
		return nil, err
	}
	return &ro, nil
}

// GCImages deletes unreferenced bases and says what it removed and
// kept.
func (c *Client) GCImages(ctx context.Context) (*api.GCResult, error) {
	var res api.GCResult
	if err := c.post(ctx, "/v1/images/gc", struct{}{}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// ResetVolume puts the machine's volume back to its image.
func (c *Client) ResetVolume(ctx context.Context, ref string) error {
	return c.post(ctx, machinePath(ref, "/volume/reset"), struct{}{}, nil)
}

// SnapshotVolume saves the machine's volume as name.
func (c *Client) SnapshotVolume(ctx context.Context, ref, name string) error {
	return c.post(ctx, machinePath(ref, "/volume/snapshots"), api.SnapshotRequest{Name: name}, nil)
}

// RollbackVolume replaces the machine's volume with snapshot name.
func (c *Client) RollbackVolume(ctx context.Context, ref, name string) error {
	return c.post(ctx, machinePath(ref, "/volume/rollback"), api.SnapshotRequest{Name: name}, nil)
}

// DeleteRoot removes the machine's volume or NFS root from the server.
func (c *Client) DeleteRoot(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, machinePath(ref, "/volume"), nil, nil)
}

// Groups lists the groups.
func (c *Client) Groups(ctx context.Context) ([]*api.Group, error) {
	var gs []*api.Group
	err := c.do(ctx, http.MethodGet, "/v1/groups", nil, &gs)
	return gs, err
}

// SetGroupRoot creates a group or replaces its root plan.
func (c *Client) SetGroupRoot(ctx context.Context, name string, root wire.RootPlan) (*api.Group, error) {
	body, err := json.Marshal(root)
	if err != nil {
		return nil, err
	}
	var g api.Group
	if err := c.do(ctx, http.MethodPut, "/v1/groups/"+url.PathEscape(name)+"/root", body, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// DeleteGroup removes an empty group.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/groups/"+url.PathEscape(name), nil, nil)
}

// SetGroup puts the machine in group ("" takes it out).
func (c *Client) SetGroup(ctx context.Context, ref, group string) (*api.Machine, error) {
	body, err := json.Marshal(api.GroupRequest{Group: group})
	if err != nil {
		return nil, err
	}
	var m api.Machine
	if err := c.do(ctx, http.MethodPut, machinePath(ref, "/group"), body, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// SetRoot sets the machine's root plan.
func (c *Client) SetRoot(ctx context.Context, ref string, root wire.RootPlan) (*api.Machine, error) {
	body, err := json.Marshal(root)
	if err != nil {
		return nil, err
	}
	var m api.Machine
	if err := c.do(ctx, http.MethodPut, machinePath(ref, "/root"), body, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func (c *Client) post(ctx context.Context, path string, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, body, out)
}
