package roots

import "errors"

// UserRootEnd reports that a machine may have let go of a user's root: a
// session of the root's iSCSI target ended, or an NFS export of it was
// handed to the machine (NFS has no session the server sees end, so the
// tunnel peer's silence decides; see package letgo). LoggedOut says the
// initiator logged out (it let go cleanly); otherwise the connection
// dropped, timed out (the target's pings end a dead session) or was
// closed by the server, or for NFS nothing is known yet.
type UserRootEnd struct {
	User      string
	MachineID string // the holder
	Exchange  string // store.UserLease.Exchange of the holder's boot
	LoggedOut bool
}

// ErrNotThatBoot means the user's root is no longer served to the boot a
// let-go names: the machine booted again or another machine took it.
var ErrNotThatBoot = errors.New("user root served to another boot")
