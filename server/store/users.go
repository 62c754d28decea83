package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrUserExists is returned by PutUser when creating a user whose name
// is taken.
var ErrUserExists = errors.New("user exists")

// User is one of sealroot's own users, who log in on a machine with a
// per-user root. Hash is the password's argon2id hash with its
// parameters (package users); the password itself is never stored.
type User struct {
	Name    string    `json:"name"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	Changed time.Time `json:"changed"` // password last set
}

// UserStore keeps sealroot's own users. *DB implements it. Names are
// checked by the caller (users.CheckName); the store refuses an empty or
// over-long one with ErrNotFound.
type UserStore interface {
	// PutUser stores u. With create, a user of that name must not exist
	// (ErrUserExists); without, it must (ErrNotFound) and keeps its
	// Created time. Decided inside the transaction that writes it.
	PutUser(ctx context.Context, u *User, create bool) error
	// User returns the user name.
	User(ctx context.Context, name string) (*User, error)
	// Users returns every user sorted by name.
	Users(ctx context.Context) ([]*User, error)
	// DeleteUser removes the user name (ErrNotFound when there is none).
	DeleteUser(ctx context.Context, name string) error
}

// userRecord decides PutUser on both backends against the stored record
// old (exists: there is one): a create refuses an existing user, an
// update a missing one and keeps its creation time. It returns the
// record to write.
func userRecord(u *User, old []byte, exists, create bool) ([]byte, error) {
	switch {
	case create && exists:
		return nil, fmt.Errorf("user %s: %w", u.Name, ErrUserExists)
	case !create && !exists:
		return nil, fmt.Errorf("user %s: %w", u.Name, ErrNotFound)
	case !create:
		var prev User
		if err := json.Unmarshal(old, &prev); err != nil {
			return nil, fmt.Errorf("user %s: %w", u.Name, err)
		}
		u.Created = prev.Created
	}
	v, err := json.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("put user %s: %w", u.Name, err)
	}
	return v, nil
}
