package machines

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/sealroot/sealroot/server/api"
)

// MaxSecretSize is the largest secret value.
const MaxSecretSize = 64 << 10

var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidSecretName reports whether name is a valid secret name. The agent
// makes each secret a file /run/sealroot/secrets/NAME, so "." and ".."
// are refused.
func ValidSecretName(name string) bool {
	return secretNameRE.MatchString(name) && name != "." && name != ".."
}

func checkSecretName(name string) error {
	if name == "." || name == ".." {
		return fmt.Errorf("%w: secret name %q: the agent makes each secret a file", api.ErrInvalid, name)
	}
	if !ValidSecretName(name) {
		return fmt.Errorf("%w: secret name %q: want 1-64 of [A-Za-z0-9._-]", api.ErrInvalid, name)
	}
	return nil
}

// SetSecret encrypts value and stores it as the machine's secret name,
// replacing any previous value.
func (m *Manager) SetSecret(ctx context.Context, ref, name string, value []byte) error {
	reason := fmt.Sprintf("secret %q", name)
	id, ct, err := m.secretToSet(ctx, ref, name, value)
	if err != nil {
		m.record(ctx, "secret-set", id, reason, err)
		return err
	}
	return m.change(ctx, "secret-set", id, reason, func() error {
		if m.keys != nil {
			return fromStore(m.keys.Seal(ctx, id, name, value))
		}
		return fromStore(m.store.PutSecret(ctx, id, name, ct))
	})
}

// secretToSet checks a secret and returns its machine's ID and, without a
// keyring, the encrypted value.
func (m *Manager) secretToSet(ctx context.Context, ref, name string, value []byte) (id string, ct []byte, err error) {
	if err := checkSecretName(name); err != nil {
		return "", nil, err
	}
	if len(value) == 0 || len(value) > MaxSecretSize {
		return "", nil, fmt.Errorf("%w: secret value of %d bytes: want 1 to %d", api.ErrInvalid, len(value), MaxSecretSize)
	}
	if m.box == nil {
		return "", nil, errors.New("set secret: no secrets box configured")
	}
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return "", nil, err
	}
	if m.keys != nil {
		return mc.ID, nil, nil // sealed to every member server in the change
	}
	ct, err = m.box.Encrypt(value)
	if err != nil {
		return mc.ID, nil, fmt.Errorf("encrypt secret %q: %w", name, err)
	}
	return mc.ID, ct, nil
}

// SecretNames lists the machine's secret names, sorted; never values.
// The read is recorded before the names are returned.
func (m *Manager) SecretNames(ctx context.Context, ref string) ([]string, error) {
	id, names, err := m.secretNames(ctx, ref)
	if err != nil {
		m.record(ctx, "secret-list", id, "", err)
		return nil, err
	}
	if err := m.recordFirst(ctx, "secret-list", id, ""); err != nil {
		return nil, err
	}
	return names, nil
}

func (m *Manager) secretNames(ctx context.Context, ref string) (string, []string, error) {
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return "", nil, err
	}
	all, err := m.store.Secrets(ctx, mc.ID)
	if err != nil {
		return mc.ID, nil, err
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	slices.Sort(names)
	return mc.ID, names, nil
}

// DeleteSecret removes the machine's secret name, or returns api.ErrNotFound.
func (m *Manager) DeleteSecret(ctx context.Context, ref, name string) error {
	reason := fmt.Sprintf("secret %q", name)
	id, err := m.secretToDelete(ctx, ref, name)
	if err != nil {
		m.record(ctx, "secret-delete", id, reason, err)
		return err
	}
	return m.change(ctx, "secret-delete", id, reason, func() error { return fromStore(m.store.DeleteSecret(ctx, id, name)) })
}

func (m *Manager) secretToDelete(ctx context.Context, ref, name string) (string, error) {
	if err := checkSecretName(name); err != nil {
		return "", err
	}
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	if _, err := m.store.Secret(ctx, mc.ID, name); err != nil {
		return mc.ID, fromStore(err)
	}
	return mc.ID, nil
}

// PlainSecrets decrypts every secret of the machine with the exact ID
// machineID, for sealing into its credential. The caller must not log or
// keep the values. Loading them is audited as "secret-load" (count only)
// before the values are returned; when it cannot be, none are
// (api.ErrUnavailable, wrapping the audit error). It is not a release: the
// attestation's own record ("attest", outcome "allowed") is, and a refused
// attestation never has one. The actor is always ServerActor.
func (m *Manager) PlainSecrets(ctx context.Context, machineID string) (map[string][]byte, error) {
	ctx = WithActor(ctx, ServerActor) // only the server seals credentials
	out, err := m.plainSecrets(ctx, machineID)
	if err != nil {
		m.record(ctx, "secret-load", machineID, "", err)
		return nil, err
	}
	if err := m.recordFirst(ctx, "secret-load", machineID, fmt.Sprintf("%d secrets decrypted for sealing", len(out))); err != nil {
		clear(out)
		return nil, err
	}
	return out, nil
}

func (m *Manager) plainSecrets(ctx context.Context, machineID string) (map[string][]byte, error) {
	all, err := m.store.Secrets(ctx, machineID)
	if err != nil {
		return nil, err
	}
	if len(all) > 0 && m.box == nil {
		return nil, errors.New("plain secrets: no secrets box configured")
	}
	out := make(map[string][]byte, len(all))
	for name, ct := range all {
		pt, err := m.box.Decrypt(ct)
		if err != nil {
			return nil, fmt.Errorf("decrypt secret %q of machine %s: %w", name, short(machineID), err)
		}
		out[name] = pt
	}
	return out, nil
}

// RedactionValues returns machine id's secret values for one use only:
// removing them from text an agent sent (its boot report) before it is
// stored. They never leave the server process, so the read is not an
// audited release (PlainSecrets is the one for sealing).
func (m *Manager) RedactionValues(ctx context.Context, machineID string) (map[string][]byte, error) {
	return m.plainSecrets(ctx, machineID)
}
