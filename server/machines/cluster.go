package machines

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/keyring"
	"github.com/sealroot/sealroot/server/secrets"
)

var _ api.ClusterService = (*Manager)(nil)

// ClusterJoin adds a server's recipient to the secrets keyring and
// re-wraps every secret, audited first ("cluster-join", the recipient).
func (m *Manager) ClusterJoin(ctx context.Context, recipient string) (*api.ClusterResult, error) {
	return m.clusterChange(ctx, "cluster-join", recipient, "add server recipient %s to the secrets keyring, re-wrap every secret",
		func(k *keyring.Keyring, r string) (keyring.Result, error) { return k.Join(ctx, r) })
}

// ClusterLeave removes a server's recipient from the secrets keyring and
// re-wraps every secret without it, audited first ("cluster-leave").
func (m *Manager) ClusterLeave(ctx context.Context, recipient string) (*api.ClusterResult, error) {
	return m.clusterChange(ctx, "cluster-leave", recipient, "remove server recipient %s from the secrets keyring, re-wrap every secret",
		func(k *keyring.Keyring, r string) (keyring.Result, error) { return k.Leave(ctx, r) })
}

// ClusterRewrap re-wraps every secret to the current members, audited
// first ("cluster-rewrap").
func (m *Manager) ClusterRewrap(ctx context.Context) (*api.ClusterResult, error) {
	return m.clusterChange(ctx, "cluster-rewrap", "", "re-wrap every secret to the keyring's members",
		func(k *keyring.Keyring, _ string) (keyring.Result, error) { return k.Rewrap(ctx) })
}

// clusterChange checks recipient (unless empty), records the change with
// the recipient (public: never the string given when it is not one, which
// may be a pasted identity) and applies it.
func (m *Manager) clusterChange(ctx context.Context, action, recipient, what string,
	apply func(*keyring.Keyring, string) (keyring.Result, error)) (*api.ClusterResult, error) {
	if m.keys == nil {
		err := fmt.Errorf("%w: this server has no secrets keyring", api.ErrUnavailable)
		m.record(ctx, action, "", action, err)
		return nil, err
	}
	reason := what
	r := ""
	if action != "cluster-rewrap" {
		var err error
		if r, err = secrets.ParseRecipient(recipient); err != nil {
			err = fmt.Errorf("%w: %w", api.ErrInvalid, err)
			m.record(ctx, action, "", action+": recipient refused", err)
			return nil, err
		}
		reason = fmt.Sprintf(what, r)
	}
	reason += fmt.Sprintf(" (run on the member with recipient %s)", m.keys.Recipient())
	var res keyring.Result
	err := m.change(ctx, action, "", reason, func() (err error) {
		res, err = apply(m.keys, r)
		return keyringErr(err)
	})
	if err != nil {
		return nil, err
	}
	return &api.ClusterResult{Version: res.Keyring.Version, Recipients: res.Keyring.Recipients,
		Rewrapped: res.Rewrapped, Redone: res.Redone}, nil
}

// keyringErr maps keyring errors to the admin API's.
func keyringErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keyring.ErrUnknownRecipient):
		return fmt.Errorf("%w: %w", api.ErrNotFound, err)
	case errors.Is(err, keyring.ErrSelf), errors.Is(err, keyring.ErrNotMember), errors.Is(err, secrets.ErrBadRecipient):
		return fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	return err
}
