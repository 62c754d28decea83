package api

import (
	"context"
	"net/http"
	"net/url"
)

// Menu is the boot menu of a machine or a group: the images its machines
// may boot (each a volatile root over that image, see
// docs/architecture.md), the local disk (UEFI machines only), the default
// entry and how long the menu waits for a choice. The menu is shown only
// when a machine is offered more than one entry.
//
//	{"images": ["debian", "alpine"], "local_disk": true,
//	 "default": "image:debian", "timeout_ms": 10000}
type Menu struct {
	Images    []string `json:"images,omitempty"`
	LocalDisk bool     `json:"local_disk,omitempty"`
	// Default is an entry ID: "image:NAME" or "local-disk".
	Default       string `json:"default"`
	TimeoutMillis int64  `json:"timeout_ms"`
}

// MenuService manages the boot menus of machines and groups (owners as
// for FileService). It is served next to Service when NewHandler gets
// WithMenus.
type MenuService interface {
	// SetMenu checks and stores the owner's menu; it returns it as stored
	// (the default filled in).
	SetMenu(ctx context.Context, owner FileOwner, m Menu) (*Menu, error)
	// Menu returns the owner's menu, or ErrNotFound.
	Menu(ctx context.Context, owner FileOwner) (*Menu, error)
	// DeleteMenu removes the owner's menu.
	DeleteMenu(ctx context.Context, owner FileOwner) error
}

// WithMenus serves svc's routes too:
//
//	GET    /v1/machines/{ref}/menu
//	PUT    /v1/machines/{ref}/menu   (Menu)
//	DELETE /v1/machines/{ref}/menu
//	GET    /v1/groups/{name}/menu     the same for a group
//	PUT    /v1/groups/{name}/menu
//	DELETE /v1/groups/{name}/menu
func WithMenus(svc MenuService) Option {
	return func(h *handler) {
		for _, kind := range []string{"machines/{ref}", "groups/{name}"} {
			h.mux.HandleFunc("GET /v1/"+kind+"/menu", func(w http.ResponseWriter, r *http.Request) {
				m, err := svc.Menu(r.Context(), fileOwner(r))
				h.reply(w, r, m, err)
			})
			h.mux.HandleFunc("PUT /v1/"+kind+"/menu", func(w http.ResponseWriter, r *http.Request) {
				var m Menu
				if err := decodeBody(w, r, &m); err != nil {
					h.reply(w, r, nil, err)
					return
				}
				out, err := svc.SetMenu(r.Context(), fileOwner(r), m)
				h.reply(w, r, out, err)
			})
			h.mux.HandleFunc("DELETE /v1/"+kind+"/menu", func(w http.ResponseWriter, r *http.Request) {
				h.reply(w, r, nil, svc.DeleteMenu(r.Context(), fileOwner(r)))
			})
		}
	}
}

// MenuPath is the API path of owner's menu, for clients.
func MenuPath(owner FileOwner) string {
	if owner.Group != "" {
		return "/v1/groups/" + url.PathEscape(owner.Group) + "/menu"
	}
	return "/v1/machines/" + url.PathEscape(owner.Machine) + "/menu"
}
