package api

import (
	"context"
	"net/http"

	"github.com/sealroot/sealroot/wire"
)

// ImageService manages base images, machines' volumes and machines' root
// plans. MACHINE arguments are as for Service. It is served next to
// Service when NewHandler gets WithImages.
type ImageService interface {
	// Images lists the named images.
	Images(ctx context.Context) ([]Image, error)
	// ImportImage imports source as the next version of name: a
	// directory or tar archive on the server's host (an absolute path),
	// or an OCI/Docker image: docker://REGISTRY/REPO[:TAG|@DIGEST] or
	// oci:PATH (an OCI layout directory or `docker save` archive on the
	// server's host).
	ImportImage(ctx context.Context, name, source string) (*Image, error)
	// RemoveImage forgets ref: one version (NAME@vN) or every version
	// (NAME), refusing (ErrConflict) while a root plan, root or snapshot
	// uses it; its base stays until GCImages. It returns what it removed.
	RemoveImage(ctx context.Context, ref string) ([]Image, error)
	// GCImages deletes the bases no image version, root or snapshot
	// references and says what it removed and what it kept, and why.
	GCImages(ctx context.Context) (*GCResult, error)

	// ResetVolume puts the machine's volume back to its image. Volume
	// operations withdraw the machine's root target first: the machine
	// gets it back at its next boot.
	ResetVolume(ctx context.Context, ref string) error
	// SnapshotVolume saves the machine's volume as name.
	SnapshotVolume(ctx context.Context, ref, name string) error
	// RollbackVolume replaces the machine's volume with snapshot name.
	RollbackVolume(ctx context.Context, ref, name string) error
	// DeleteRoot removes the machine's volume or NFS root, with its
	// snapshots, from the server.
	DeleteRoot(ctx context.Context, ref string) error
	// Snapshots lists the machine's snapshots.
	Snapshots(ctx context.Context, ref string) ([]Snapshot, error)
	// DeleteSnapshot removes the machine's snapshot name.
	DeleteSnapshot(ctx context.Context, ref, name string) error
	// UpgradeRoot moves the machine's root to image (NAME@vN, NAME for
	// the latest; "" for what its plan names): the root starts afresh on
	// the new base and the old one is kept as a snapshot (Upgrade.KeptAs).
	// A machine outside a group gets image as its plan.
	UpgradeRoot(ctx context.Context, ref, image string) (*Upgrade, error)
	// Rollout moves group's machines to req.Image (NAME@vN; "" for the
	// latest version of the group's image) as UpgradeRoot does;
	// req.Canary > 0 moves at most that many and req.Machines only those,
	// leaving the group's plan alone; otherwise every member moves and the
	// group's plan becomes the version. A volatile group's members switch
	// at their next boot. req.DryRun changes nothing and says what would
	// happen.
	Rollout(ctx context.Context, group string, req RolloutRequest) (*Rollout, error)

	// SetRoot sets the root plan the machine gets at its next boot.
	SetRoot(ctx context.Context, ref string, root wire.RootPlan) (*Machine, error)

	// Groups lists the groups of machines that share a root.
	Groups(ctx context.Context) ([]*Group, error)
	// SetGroupRoot creates a group or replaces its root plan.
	SetGroupRoot(ctx context.Context, name string, root wire.RootPlan) (*Group, error)
	// DeleteGroup removes a group that has no machines.
	DeleteGroup(ctx context.Context, name string) error
	// SetGroup puts a machine in a group ("" takes it out).
	SetGroup(ctx context.Context, ref, group string) (*Machine, error)
}

// GroupRequest is the body of PUT /v1/machines/{ref}/group.
type GroupRequest struct {
	Group string `json:"group"`
}

// ImportRequest is the body of POST /v1/images.
type ImportRequest struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

// GCResult is the body answering POST /v1/images/gc.
type GCResult struct {
	// Removed are the digests of the bases deleted.
	Removed []string `json:"removed"`
	// Kept are the bases still referenced, with what references them.
	Kept []GCKept `json:"kept"`
}

// GCKept is a base image GC kept.
type GCKept struct {
	Digest string `json:"digest"`
	// UsedBy says what references it: "image NAME@vN", "group G",
	// "machine ID NAME" (its plan), "root of machine ID NAME", "snapshot S
	// of machine ID NAME", or roots of a machine no longer known.
	UsedBy []string `json:"used_by"`
}

// ForgetRequest is the body of POST /v1/machines/{ref}/forget.
type ForgetRequest struct {
	KeepRoot bool `json:"keep_root,omitempty"`
}

// Forgotten answers POST /v1/machines/{ref}/forget.
type Forgotten struct {
	Machine string `json:"machine"`
	// RootDeleted reports whether the machine had roots on the server
	// and they were deleted with their snapshots.
	RootDeleted bool `json:"root_deleted"`
}

// UpgradeRequest is the body of POST /v1/machines/{ref}/root/upgrade.
type UpgradeRequest struct {
	Image string `json:"image,omitempty"`
}

// RolloutRequest is the body of POST /v1/groups/{name}/rollout.
type RolloutRequest struct {
	// Image is the version, NAME@vN or NAME (its latest); "" for the
	// latest version of the group's image.
	Image  string `json:"image,omitempty"`
	Canary int    `json:"canary,omitempty"`
	// Machines, when set, are the only members moved (IDs, ID prefixes
	// or names).
	Machines []string `json:"machines,omitempty"`
	// DryRun answers what the rollout would do, changing nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// RemoveResult is the body answering DELETE /v1/images/{ref}.
type RemoveResult struct {
	Removed []Image `json:"removed"`
}

// SnapshotRequest is the body of POST /v1/machines/{ref}/volume/snapshots
// and /volume/rollback.
type SnapshotRequest struct {
	Name string `json:"name"`
}

// WithImages serves svc's routes too:
//
//	GET    /v1/images                            list
//	POST   /v1/images                            import (ImportRequest)
//	DELETE /v1/images/{ref}                      remove (RemoveResult)
//	POST   /v1/images/gc                         garbage-collect (GCResult)
//	POST   /v1/machines/{ref}/volume/reset       reset to the image
//	POST   /v1/machines/{ref}/volume/snapshots   snapshot (SnapshotRequest)
//	POST   /v1/machines/{ref}/volume/rollback    roll back (SnapshotRequest)
//	GET    /v1/machines/{ref}/volume/snapshots   list snapshots
//	DELETE /v1/machines/{ref}/volume/snapshots/{name}  delete a snapshot
//	POST   /v1/machines/{ref}/root/upgrade       upgrade (UpgradeRequest)
//	POST   /v1/groups/{name}/rollout             roll out (RolloutRequest)
//	DELETE /v1/machines/{ref}/volume             delete the machine's root
//	PUT    /v1/machines/{ref}/root               set the root plan (wire.RootPlan)
//	PUT    /v1/machines/{ref}/group              set the machine's group (GroupRequest)
//	GET    /v1/groups                            list groups
//	PUT    /v1/groups/{name}/root                create a group or set its root (wire.RootPlan)
//	DELETE /v1/groups/{name}                     remove an empty group
func WithImages(svc ImageService) Option {
	return func(h *handler) {
		ih := &imageHandler{h: h, svc: svc}
		h.mux.HandleFunc("GET /v1/images", ih.list)
		h.mux.HandleFunc("POST /v1/images", ih.importImage)
		h.mux.HandleFunc("DELETE /v1/images/{name}", ih.remove)
		h.mux.HandleFunc("GET /v1/machines/{ref}/volume/snapshots", ih.snapshots)
		h.mux.HandleFunc("DELETE /v1/machines/{ref}/volume/snapshots/{name}", ih.deleteSnapshot)
		h.mux.HandleFunc("POST /v1/machines/{ref}/root/upgrade", ih.upgrade)
		h.mux.HandleFunc("POST /v1/groups/{name}/rollout", ih.rollout)
		h.mux.HandleFunc("POST /v1/images/gc", ih.gc)
		h.mux.HandleFunc("POST /v1/machines/{ref}/volume/reset", ih.reset)
		h.mux.HandleFunc("POST /v1/machines/{ref}/volume/snapshots", ih.snapshot)
		h.mux.HandleFunc("POST /v1/machines/{ref}/volume/rollback", ih.rollback)
		h.mux.HandleFunc("DELETE /v1/machines/{ref}/volume", ih.deleteRoot)
		h.mux.HandleFunc("PUT /v1/machines/{ref}/root", ih.setRoot)
		h.mux.HandleFunc("PUT /v1/machines/{ref}/group", ih.setGroup)
		h.mux.HandleFunc("GET /v1/groups", ih.groups)
		h.mux.HandleFunc("PUT /v1/groups/{name}/root", ih.setGroupRoot)
		h.mux.HandleFunc("DELETE /v1/groups/{name}", ih.deleteGroup)
	}
}

type imageHandler struct {
	h   *handler
	svc ImageService
}

func (ih *imageHandler) list(w http.ResponseWriter, r *http.Request) {
	ims, err := ih.svc.Images(r.Context())
	if ims == nil {
		ims = []Image{}
	}
	ih.h.reply(w, r, ims, err)
}

func (ih *imageHandler) importImage(w http.ResponseWriter, r *http.Request) {
	var req ImportRequest
	if err := decodeBody(w, r, &req); err != nil {
		ih.h.reply(w, r, nil, err)
		return
	}
	im, err := ih.svc.ImportImage(r.Context(), req.Name, req.Source)
	ih.h.reply(w, r, im, err)
}

func (ih *imageHandler) remove(w http.ResponseWriter, r *http.Request) {
	removed, err := ih.svc.RemoveImage(r.Context(), r.PathValue("name"))
	if removed == nil {
		removed = []Image{}
	}
	ih.h.reply(w, r, RemoveResult{Removed: removed}, err)
}

func (ih *imageHandler) snapshots(w http.ResponseWriter, r *http.Request) {
	ss, err := ih.svc.Snapshots(r.Context(), r.PathValue("ref"))
	if ss == nil {
		ss = []Snapshot{}
	}
	ih.h.reply(w, r, ss, err)
}

func (ih *imageHandler) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	ih.h.reply(w, r, nil, ih.svc.DeleteSnapshot(r.Context(), r.PathValue("ref"), r.PathValue("name")))
}

func (ih *imageHandler) upgrade(w http.ResponseWriter, r *http.Request) {
	var req UpgradeRequest
	if err := decodeBody(w, r, &req); err != nil {
		ih.h.reply(w, r, nil, err)
		return
	}
	u, err := ih.svc.UpgradeRoot(r.Context(), r.PathValue("ref"), req.Image)
	ih.h.reply(w, r, u, err)
}

func (ih *imageHandler) rollout(w http.ResponseWriter, r *http.Request) {
	var req RolloutRequest
	if err := decodeBody(w, r, &req); err != nil {
		ih.h.reply(w, r, nil, err)
		return
	}
	ro, err := ih.svc.Rollout(r.Context(), r.PathValue("name"), req)
	ih.h.reply(w, r, ro, err)
}

func (ih *imageHandler) gc(w http.ResponseWriter, r *http.Request) {
	res, err := ih.svc.GCImages(r.Context())
	if res == nil {
		res = &GCResult{Removed: []string{}, Kept: []GCKept{}}
	}
	ih.h.reply(w, r, res, err)
}

func (ih *imageHandler) reset(w http.ResponseWriter, r *http.Request) {
	ih.h.reply(w, r, nil, ih.svc.ResetVolume(r.Context(), r.PathValue("ref")))
}

func (ih *imageHandler) deleteRoot(w http.ResponseWriter, r *http.Request) {
	ih.h.reply(w, r, nil, ih.svc.DeleteRoot(r.Context(), r.PathValue("ref")))
}

func (ih *imageHandler) snapshot(w http.ResponseWriter, r *http.Request) {
	ih.snapshotOp(w, r, ih.svc.SnapshotVolume)
}

func (ih *imageHandler) rollback(w http.ResponseWriter, r *http.Request) {
	ih.snapshotOp(w, r, ih.svc.RollbackVolume)
}

func (ih *imageHandler) snapshotOp(w http.ResponseWriter, r *http.Request, op func(context.Context, string, string) error) {
	var req SnapshotRequest
	if err := decodeBody(w, r, &req); err != nil {
		ih.h.reply(w, r, nil, err)
		return
	}
	ih.h.reply(w, r, nil, op(r.Context(), r.PathValue("ref"), req.Name))
}

func (ih *imageHandler) setRoot(w http.ResponseWriter, r *http.Request) {
	var root wire.RootPlan
	if err := decodeBody(w, r, &root); err != nil {
		ih.h.reply(w, r, nil, err)
		return
	}
	m, err := ih.svc.SetRoot(r.Context(), r.PathValue("ref"), root)
	ih.h.reply(w, r, m, err)
}

func (ih *imageHandler) setGroup(w http.ResponseWriter, r *http.Request) {
	var req GroupRequest
	if err := decodeBody(w, r, &req); err != nil {
		ih.h.reply(w, r, nil, err)
		return
	}
	m, err := ih.svc.SetGroup(r.Context(), r.PathValue("ref"), req.Group)
	ih.h.reply(w, r, m, err)
}

func (ih *imageHandler) groups(w http.ResponseWriter, r *http.Request) {
	gs, err := ih.svc.Groups(r.Context())
	if gs == nil {
		gs = []*Group{}
	}
	ih.h.reply(w, r, gs, err)
}

func (ih *imageHandler) setGroupRoot(w http.ResponseWriter, r *http.Request) {
	var root wire.RootPlan
	if err := decodeBody(w, r, &root); err != nil {
		ih.h.reply(w, r, nil, err)
		return
	}
	g, err := ih.svc.SetGroupRoot(r.Context(), r.PathValue("name"), root)
	ih.h.reply(w, r, g, err)
}

func (ih *imageHandler) deleteGroup(w http.ResponseWriter, r *http.Request) {
	ih.h.reply(w, r, nil, ih.svc.DeleteGroup(r.Context(), r.PathValue("name")))
}
