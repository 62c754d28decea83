package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// File is a configuration file attached to a machine or a group; the agent
// writes it into the machine's root at every boot, the machine's own over
// its group's. Content is a Go text/template when Template is set.
type File struct {
	Path     string `json:"path"`
	Mode     uint32 `json:"mode"`
	UID      uint32 `json:"uid"`
	GID      uint32 `json:"gid"`
	Template bool   `json:"template,omitempty"`
	Size     int    `json:"size"`
	// Content is sent to set a file; lists leave it out.
	Content []byte `json:"content,omitempty"`
}

// FileOwner says whose files: a MACHINE reference (as for Service) or a
// group name, exactly one.
type FileOwner struct {
	Machine string `json:"machine,omitempty"`
	Group   string `json:"group,omitempty"`
}

func (o FileOwner) String() string {
	if o.Group != "" {
		return "group " + o.Group
	}
	return "machine " + o.Machine
}

// FileService manages the files of machines and groups. It is served next
// to Service when NewHandler gets WithFiles.
type FileService interface {
	// SetFile adds or replaces the owner's file at f.Path.
	SetFile(ctx context.Context, owner FileOwner, f File) error
	// Files lists the owner's files by path, without content.
	Files(ctx context.Context, owner FileOwner) ([]File, error)
	// DeleteFile removes the owner's file at path.
	DeleteFile(ctx context.Context, owner FileOwner, path string) error
}

// maxFileRequest bounds a set-file body: 64 KiB of content in base64 and
// the metadata.
const maxFileRequest = 96 << 10

// WithFiles serves svc's routes too:
//
//	GET    /v1/machines/{ref}/files               list (without content)
//	PUT    /v1/machines/{ref}/files               add or replace (File)
//	DELETE /v1/machines/{ref}/files?path=PATH     remove
//	GET    /v1/groups/{name}/files                the same for a group
//	PUT    /v1/groups/{name}/files
//	DELETE /v1/groups/{name}/files?path=PATH
func WithFiles(svc FileService) Option {
	return func(h *handler) {
		fh := &fileHandler{h: h, svc: svc}
		for _, kind := range []string{"machines/{ref}", "groups/{name}"} {
			h.mux.HandleFunc("GET /v1/"+kind+"/files", fh.list)
			h.mux.HandleFunc("PUT /v1/"+kind+"/files", fh.set)
			h.mux.HandleFunc("DELETE /v1/"+kind+"/files", fh.remove)
		}
	}
}

type fileHandler struct {
	h   *handler
	svc FileService
}

func fileOwner(r *http.Request) FileOwner {
	if ref := r.PathValue("ref"); ref != "" {
		return FileOwner{Machine: ref}
	}
	return FileOwner{Group: r.PathValue("name")}
}

func (fh *fileHandler) list(w http.ResponseWriter, r *http.Request) {
	fs, err := fh.svc.Files(r.Context(), fileOwner(r))
	if fs == nil {
		fs = []File{}
	}
	fh.h.reply(w, r, fs, err)
}

func (fh *fileHandler) set(w http.ResponseWriter, r *http.Request) {
	var f File
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFileRequest))
	dec.DisallowUnknownFields()
	err := dec.Decode(&f)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeErrorStatus(w, http.StatusRequestEntityTooLarge,
			fmt.Errorf("file request is larger than %d bytes: %w", maxFileRequest, ErrInvalid))
		return
	case err != nil:
		fh.h.reply(w, r, nil, fmt.Errorf("decoding file: %v: %w", err, ErrInvalid))
		return
	}
	fh.h.reply(w, r, nil, fh.svc.SetFile(r.Context(), fileOwner(r), f))
}

func (fh *fileHandler) remove(w http.ResponseWriter, r *http.Request) {
	fh.h.reply(w, r, nil, fh.svc.DeleteFile(r.Context(), fileOwner(r), r.URL.Query().Get("path")))
}

// FilesPath is the API path of owner's files, for clients.
func FilesPath(owner FileOwner) string {
	if owner.Group != "" {
		return "/v1/groups/" + url.PathEscape(owner.Group) + "/files"
	}
	return "/v1/machines/" + url.PathEscape(owner.Machine) + "/files"
}
