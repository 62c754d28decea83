// Package keyring keeps every machine secret encrypted at rest to every
// member server of a cluster. Each server has its own age identity
// (secrets.Box, never shared); the store holds the keyring, the list of
// the members' recipients, shared like the rest of the state. A secret is
// stored only if it was encrypted to the keyring's current version; Join
// and Leave change the keyring and re-wrap every secret to it, each
// re-wrap decided against the secret's current ciphertext, so a secret
// set meanwhile is never lost nor left on the old list.
package keyring

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
)

// maxAttempts bounds how often one operation re-reads and redoes after
// losing to a concurrent change (a join elsewhere, a secret set).
const maxAttempts = 20

// Errors of Join and Leave.
var (
	// ErrNotMember is returned when this server's recipient is not in the
	// keyring: it cannot decrypt the secrets, so it cannot re-wrap them.
	ErrNotMember = errors.New("this server is not a member of the secrets keyring")
	// ErrUnknownRecipient is returned by Leave for a recipient that is
	// not in the keyring.
	ErrUnknownRecipient = errors.New("recipient is not a member of the secrets keyring")
	// ErrSelf is returned by Leave for this server's own recipient.
	ErrSelf = errors.New("a server cannot remove itself from the keyring")
)

// Store is what a Keyring needs of the state store.
type Store interface {
	store.KeyringStore
	Secrets(ctx context.Context, machineID string) (map[string][]byte, error)
}

// Keyring seals and re-wraps secrets for one server. It is safe for
// concurrent use.
type Keyring struct {
	store  Store
	box    *secrets.Box
	logger hclog.Logger

	// beforeRewrap, if set (tests), runs between reading a secret and
	// storing its re-wrapped ciphertext.
	beforeRewrap func(machineID, name string)
}

// New returns the keyring of the server whose identity is box.
func New(st Store, box *secrets.Box, logger hclog.Logger) *Keyring {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Keyring{store: st, box: box, logger: logger.Named("keyring")}
}

// Recipient is this server's recipient.
func (k *Keyring) Recipient() string { return k.box.Recipient() }

// Init makes a keyring of this server alone when the store has none (a
// new single server, or state migrated from one, whose secrets are
// encrypted to this server). It warns when this server is not a member:
// it can then store secrets but not decrypt them until a member runs
// `sealroot cluster join` with its recipient.
func (k *Keyring) Init(ctx context.Context) (store.Keyring, error) {
	kr, err := k.store.Keyring(ctx)
	if err != nil {
		return kr, fmt.Errorf("keyring init: %w", err)
	}
	if kr.Version == 0 {
		kr, err = k.store.SetKeyring(ctx, 0, []string{k.Recipient()})
		if errors.Is(err, store.ErrKeyringChanged) {
			kr, err = k.store.Keyring(ctx) // another server made it first
		}
		if err != nil {
			return kr, fmt.Errorf("keyring init: %w", err)
		}
	}
	if !slices.Contains(kr.Recipients, k.Recipient()) {
		k.logger.Warn("this server is not a member of the secrets keyring: it cannot decrypt secrets until a member runs sealroot cluster join",
			"recipient", k.Recipient(), "members", len(kr.Recipients))
	}
	return kr, nil
}

// Seal encrypts value to every member and stores it as the machine's
// secret name, again with the new list when the keyring changed in
// between.
func (k *Keyring) Seal(ctx context.Context, machineID, name string, value []byte) error {
	for range maxAttempts {
		kr, err := k.current(ctx)
		if err != nil {
			return err
		}
		ct, err := secrets.EncryptTo(kr.Recipients, value)
		if err != nil {
			return fmt.Errorf("seal secret %q: %w", name, err)
		}
		err = k.store.PutSecretSealed(ctx, machineID, name, ct, kr.Version)
		if !errors.Is(err, store.ErrKeyringChanged) {
			return err
		}
	}
	return fmt.Errorf("seal secret %q: %w", name, store.ErrConflict)
}

// current returns the keyring, making it when there is none.
func (k *Keyring) current(ctx context.Context) (store.Keyring, error) {
	kr, err := k.store.Keyring(ctx)
	if err == nil && kr.Version == 0 {
		return k.Init(ctx)
	}
	return kr, err
}

// Encrypt encrypts plaintext to every member of the current keyring
// (a secret in transit between servers: a home server's answer).
func (k *Keyring) Encrypt(ctx context.Context, plaintext []byte) ([]byte, error) {
	kr, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	ct, err := secrets.EncryptTo(kr.Recipients, plaintext)
	if err != nil {
		return nil, fmt.Errorf("keyring encrypt: %w", err)
	}
	return ct, nil
}

// Decrypt decrypts a secret with this server's identity.
func (k *Keyring) Decrypt(ct []byte) ([]byte, error) { return k.box.Decrypt(ct) }

// Result is what Join, Leave and Rewrap did.
type Result struct {
	Keyring   store.Keyring
	Rewrapped int // secrets re-wrapped
	Redone    int // re-wraps redone after a concurrent change
	Gone      int // secrets deleted while being re-wrapped
}

// Join adds a server's recipient ("age1...") to the keyring and re-wraps
// every secret to the new list, so that the server can decrypt them.
// Joining a member again only re-wraps (finishing an interrupted join).
func (k *Keyring) Join(ctx context.Context, recipient string) (Result, error) {
	r, err := secrets.ParseRecipient(recipient)
	if err != nil {
		return Result{}, fmt.Errorf("cluster join: %w", err)
	}
	return k.change(ctx, "join", func(cur []string) []string {
		if slices.Contains(cur, r) {
			return cur
		}
		return append(slices.Clone(cur), r)
	})
}

// Leave removes a server's recipient from the keyring and re-wraps every
// secret to the remaining members: the removed server's identity decrypts
// none of the re-wrapped ciphertexts (older copies of the state, such as
// backups or etcd history before compaction, still hold ciphertexts it
// decrypts).
func (k *Keyring) Leave(ctx context.Context, recipient string) (Result, error) {
	r, err := secrets.ParseRecipient(recipient)
	if err != nil {
		return Result{}, fmt.Errorf("cluster leave: %w", err)
	}
	if r == k.Recipient() {
		return Result{}, fmt.Errorf("cluster leave %s: %w: run it on another member", r, ErrSelf)
	}
	if kr, err := k.store.Keyring(ctx); err != nil {
		return Result{}, fmt.Errorf("cluster leave: %w", err)
	} else if !slices.Contains(kr.Recipients, r) {
		return Result{}, fmt.Errorf("cluster leave %s: %w", r, ErrUnknownRecipient)
	}
	return k.change(ctx, "leave", func(cur []string) []string {
		return slices.DeleteFunc(slices.Clone(cur), func(s string) bool { return s == r })
	})
}

// change sets the keyring to edit(current) and re-wraps every secret.
func (k *Keyring) change(ctx context.Context, op string, edit func([]string) []string) (Result, error) {
	for range maxAttempts {
		kr, err := k.current(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("cluster %s: %w", op, err)
		}
		if !slices.Contains(kr.Recipients, k.Recipient()) {
			return Result{}, fmt.Errorf("cluster %s: %w (recipient %s)", op, ErrNotMember, k.Recipient())
		}
		next := edit(kr.Recipients)
		if !slices.Equal(next, kr.Recipients) {
			_, err = k.store.SetKeyring(ctx, kr.Version, next)
			if errors.Is(err, store.ErrKeyringChanged) {
				continue
			}
			if err != nil {
				return Result{}, fmt.Errorf("cluster %s: %w", op, err)
			}
			k.logger.Info("secrets keyring changed", "op", op, "members", len(next))
		}
		res, err := k.Rewrap(ctx)
		if err != nil {
			return res, fmt.Errorf("cluster %s: %w", op, err)
		}
		return res, nil
	}
	return Result{}, fmt.Errorf("cluster %s: %w", op, store.ErrConflict)
}

// Rewrap re-encrypts every secret to the current keyring. Join and Leave
// call it; run alone, it finishes a join or leave that was interrupted.
func (k *Keyring) Rewrap(ctx context.Context) (Result, error) {
	var res Result
	kr, err := k.current(ctx)
	if err != nil {
		return res, fmt.Errorf("rewrap: %w", err)
	}
	if !slices.Contains(kr.Recipients, k.Recipient()) {
		return res, fmt.Errorf("rewrap: %w (recipient %s)", ErrNotMember, k.Recipient())
	}
	ids, err := k.store.SecretMachines(ctx)
	if err != nil {
		return res, fmt.Errorf("rewrap: %w", err)
	}
	for _, id := range ids {
		all, err := k.store.Secrets(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // forgotten meanwhile
		}
		if err != nil {
			return res, fmt.Errorf("rewrap: %w", err)
		}
		for _, name := range slices.Sorted(maps.Keys(all)) {
			if err := k.rewrapOne(ctx, id, name, all[name], &res); err != nil {
				return res, err
			}
		}
	}
	res.Keyring, err = k.store.Keyring(ctx)
	k.logger.Info("secrets re-wrapped", "secrets", res.Rewrapped, "redone", res.Redone, "gone", res.Gone,
		"keyring_version", res.Keyring.Version)
	return res, err
}

// rewrapOne re-wraps one secret whose ciphertext was read as ct, reading
// it again after every concurrent change.
func (k *Keyring) rewrapOne(ctx context.Context, machineID, name string, ct []byte, res *Result) error {
	for attempt := range maxAttempts {
		if attempt > 0 {
			res.Redone++
			cur, err := k.store.Secrets(ctx, machineID)
			if errors.Is(err, store.ErrNotFound) {
				res.Gone++
				return nil
			}
			if err != nil {
				return fmt.Errorf("rewrap: %w", err)
			}
			var ok bool
			if ct, ok = cur[name]; !ok {
				res.Gone++
				return nil
			}
		}
		kr, err := k.store.Keyring(ctx)
		if err != nil {
			return fmt.Errorf("rewrap: %w", err)
		}
		pt, err := k.box.Decrypt(ct)
		if err != nil {
			return fmt.Errorf("rewrap secret %q of machine %s: %w", name, machineID, err)
		}
		next, err := secrets.EncryptTo(kr.Recipients, pt)
		clear(pt)
		if err != nil {
			return fmt.Errorf("rewrap secret %q of machine %s: %w", name, machineID, err)
		}
		if k.beforeRewrap != nil {
			k.beforeRewrap(machineID, name)
		}
		err = k.store.RewrapSecret(ctx, machineID, name, ct, next, kr.Version)
		switch {
		case err == nil:
			res.Rewrapped++
			return nil
		case errors.Is(err, store.ErrNotFound):
			res.Gone++
			return nil
		case errors.Is(err, store.ErrSecretChanged), errors.Is(err, store.ErrKeyringChanged):
			continue
		default:
			return fmt.Errorf("rewrap: %w", err)
		}
	}
	return fmt.Errorf("rewrap secret %q of machine %s: %w", name, machineID, store.ErrConflict)
}
