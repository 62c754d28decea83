package store

import (
	"context"
	"errors"

	"github.com/sealroot/sealroot/wire"
)

// ErrFilesLimit is returned by PutFile when the owner's files would exceed
// wire.MaxFiles or wire.MaxFilesTotal, or when a path clashes with
// another file's (one under the other).
var ErrFilesLimit = errors.New("files limit")

// File is a configuration file attached to a machine or a group, written
// by the agent into the machine's root at every boot. Content is a Go
// text/template when Template is set, rendered per machine at release.
type File struct {
	Path     string `json:"path"`
	Mode     uint32 `json:"mode"`
	UID      uint32 `json:"uid"`
	GID      uint32 `json:"gid"`
	Template bool   `json:"template,omitempty"`
	Content  []byte `json:"content"`
}

// FileOwner names whose files: exactly one of Machine (an ID) and Group.
type FileOwner struct {
	Machine string
	Group   string
}

// FileStore keeps machines' and groups' files. *DB implements it.
type FileStore interface {
	// PutFile adds or replaces owner's file at f.Path, within the limits
	// (ErrFilesLimit); the owner must exist (ErrNotFound). PutFile and
	// DeleteFile change the Version of the machines that get the files.
	PutFile(ctx context.Context, owner FileOwner, f *File) error
	// Files returns owner's files sorted by path; none for an owner
	// without files, ErrNotFound for an unknown owner.
	Files(ctx context.Context, owner FileOwner) ([]*File, error)
	// DeleteFile removes owner's file at path, or returns ErrNotFound.
	DeleteFile(ctx context.Context, owner FileOwner, path string) error
}

// checkFile checks f as the agent will (wire.CheckFile).
func checkFile(f *File) error {
	return wire.CheckFile(&wire.File{Path: f.Path, Mode: f.Mode, UID: f.UID, GID: f.GID, Content: f.Content})
}
