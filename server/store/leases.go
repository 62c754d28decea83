package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Lease errors.
var (
	// ErrLeaseHeld means a user's root is held by another machine.
	ErrLeaseHeld = errors.New("user root held by another machine")
	// ErrLeaseFreed means a claimed lease was freed (by the operator)
	// before the release confirmed it.
	ErrLeaseFreed = errors.New("user root lease freed")
)

// UserLease says which machine mounts a user's per-user root: one machine
// at a time. A lease is claimed (Claim set) before the root is prepared
// and confirmed in the transaction that records the machine's release
// (Boot set, Claim cleared). It ends when the machine attests again, is
// revoked or forgotten, lets go of the root (FreeLetGoLease), or the
// operator frees it.
type UserLease struct {
	User      string    `json:"user"`
	MachineID string    `json:"machine_id"`
	Boot      uint64    `json:"boot,omitempty"` // the machine's BootCount of the release; 0 while claimed
	Since     time.Time `json:"since"`
	// Claim names the exchange that claimed the lease and has not yet
	// released; empty once confirmed.
	Claim string `json:"claim,omitempty"`
	// Exchange names the exchange that released the lease's boot (its
	// claim, kept once confirmed): the boot a let-go frees (see
	// FreeLetGoLease).
	Exchange string `json:"exchange,omitempty"`
}

// LeaseHeldError is ErrLeaseHeld with the lease that holds the root.
type LeaseHeldError struct{ Lease UserLease }

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("user %s: %v %.12s (since %s)", e.Lease.User, ErrLeaseHeld, e.Lease.MachineID,
		e.Lease.Since.UTC().Format(time.RFC3339))
}
func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// LeaseStore keeps user-root leases. *DB implements it. Each method
// decides inside the transaction that writes.
type LeaseStore interface {
	// ClaimUserLease claims user's lease for machineID by exchange claim,
	// freeing the machine's leases of other users (it boots again). It
	// fails with *LeaseHeldError while another machine holds the lease.
	ClaimUserLease(ctx context.Context, user, machineID, claim string, now time.Time) error
	// ReleaseWithLease is UpdateMachine that, in the same transaction,
	// confirms user's lease for the machine (it must still hold claim;
	// else *LeaseHeldError or ErrNotFound) with the updated BootCount,
	// and frees the machine's leases of other users. An empty user only
	// frees the machine's leases.
	ReleaseWithLease(ctx context.Context, id, user, claim string, fn func(*Machine) error) (*Machine, error)
	// UserLease returns user's lease, or ErrNotFound.
	UserLease(ctx context.Context, user string) (*UserLease, error)
	// UserLeases returns every lease sorted by user.
	UserLeases(ctx context.Context) ([]*UserLease, error)
	// FreeUserLease ends user's lease and returns it (ErrNotFound when
	// there is none). With claim set, only a lease still claimed by
	// claim is freed.
	FreeUserLease(ctx context.Context, user, claim string) (*UserLease, error)
	// FreeLetGoLease ends user's lease once machineID has let go of the
	// root it mounted on the boot released by exchange: it frees the
	// lease only if, in the transaction that deletes it, the lease is
	// still that boot's (same machine, confirmed, same Exchange); else it
	// changes nothing and fails with ErrNotFound (no lease) or
	// *LeaseHeldError (another boot's or machine's, or still claimed).
	FreeLetGoLease(ctx context.Context, user, machineID, exchange string) (*UserLease, error)
}
