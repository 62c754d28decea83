package api

import (
	"context"
	"errors"
)

// Errors a Service returns; the API maps them to HTTP status codes and the
// client maps them back, so `errors.Is` works across the socket.
var (
	ErrNotFound  = errors.New("not found") // 404
	ErrAmbiguous = errors.New("ambiguous") // 409: a prefix matched several machines
	ErrConflict  = errors.New("conflict")  // 409: wrong state for the operation
	ErrInvalid   = errors.New("invalid")   // 400: bad argument
	// ErrUnavailable: the server cannot do it now and changed nothing
	// (its audit log cannot be written, say); the message says why.
	ErrUnavailable = errors.New("unavailable") // 503
)

// Service is what the admin API exposes. MACHINE arguments are a full ID, a
// unique ID prefix (at least 8 hex digits) or a machine name.
type Service interface {
	Machines(ctx context.Context) ([]*Machine, error)
	Machine(ctx context.Context, ref string) (*Machine, error)
	// Approve pins the boot state the machine last reported (pending or
	// needs-reapproval) and marks it approved. name, if not empty, renames it.
	Approve(ctx context.Context, ref string, opts ApproveOptions) (*Machine, error)
	// Revoke refuses the machine from now on.
	Revoke(ctx context.Context, ref, reason string) (*Machine, error)
	// Forget deletes the machine and its secrets; its next boot is unknown.
	Forget(ctx context.Context, ref string) error
	// ForgetMachine forgets the machine as Forget does and then deletes
	// its roots and their snapshots from the server, unless keepRoot.
	ForgetMachine(ctx context.Context, ref string, keepRoot bool) (*Forgotten, error)

	SetSecret(ctx context.Context, ref, name string, value []byte) error
	// SecretNames lists secret names, never values.
	SecretNames(ctx context.Context, ref string) ([]string, error)
	DeleteSecret(ctx context.Context, ref, name string) error
}

// ApproveOptions are optional settings applied at approval.
type ApproveOptions struct {
	Name   string `json:"name,omitempty"`
	Policy Policy `json:"policy,omitempty"`
}
