package machines

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/users"
)

var _ api.UserService = (*Manager)(nil)

// userParams are the argon2id parameters new hashes get; tests lower
// them (setUserParams).
func (m *Manager) hashParams() users.Params {
	if m.userParams != nil {
		return *m.userParams
	}
	return users.DefaultParams
}

func (m *Manager) userStore() (store.UserStore, error) {
	us, ok := m.store.(store.UserStore)
	if !ok {
		return nil, fmt.Errorf("%w: this store keeps no users", api.ErrUnavailable)
	}
	return us, nil
}

// Users lists sealroot's own users, without their hashes.
func (m *Manager) Users(ctx context.Context) ([]api.User, error) {
	us, err := m.userStore()
	if err != nil {
		return nil, err
	}
	list, err := us.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.User, len(list))
	for i, u := range list {
		out[i] = api.User{Name: u.Name, Created: u.Created, Changed: u.Changed}
	}
	return out, nil
}

// AddUser creates user name with password, stored as an argon2id hash.
// Audited first; the password is in no record or log.
func (m *Manager) AddUser(ctx context.Context, name string, password []byte) error {
	return m.putUser(ctx, "user-add", name, password, true)
}

// SetPassword replaces the password of user name.
func (m *Manager) SetPassword(ctx context.Context, name string, password []byte) error {
	return m.putUser(ctx, "user-passwd", name, password, false)
}

func (m *Manager) putUser(ctx context.Context, action, name string, password []byte, create bool) error {
	reason := "user " + name
	us, err := m.userStore()
	var hash string
	if err == nil {
		err = userInput(name, password)
	}
	if err == nil {
		hash, err = users.Hash(password, m.hashParams(), nil)
	}
	if err != nil {
		err = userError(err)
		m.record(ctx, action, "", reason, err)
		return err
	}
	now := time.Now().UTC()
	return m.change(ctx, action, "", reason, func() error {
		return userError(us.PutUser(ctx, &store.User{Name: name, Hash: hash, Created: now, Changed: now}, create))
	})
}

// RemoveUser deletes user name.
func (m *Manager) RemoveUser(ctx context.Context, name string) error {
	const action = "user-rm"
	reason := "user " + name
	us, err := m.userStore()
	if err == nil {
		err = users.CheckName(name)
	}
	if err != nil {
		err = userError(err)
		m.record(ctx, action, "", reason, err)
		return err
	}
	return m.change(ctx, action, "", reason, func() error { return userError(us.DeleteUser(ctx, name)) })
}

func userInput(name string, password []byte) error {
	if err := users.CheckName(name); err != nil {
		return err
	}
	return users.CheckPassword(password)
}

// userError maps user and store errors to api sentinels.
func userError(err error) error {
	switch {
	case err == nil || isRefusal(err) || errors.Is(err, api.ErrUnavailable):
		return err
	case errors.Is(err, users.ErrBadName), errors.Is(err, users.ErrBadPassword):
		return &apiError{kind: api.ErrInvalid, err: err}
	case errors.Is(err, store.ErrUserExists):
		return &apiError{kind: api.ErrConflict, err: err}
	case errors.Is(err, store.ErrNotFound):
		return &apiError{kind: api.ErrNotFound, err: err}
	}
	return err
}
