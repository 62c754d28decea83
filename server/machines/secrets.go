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

// ValidSecretName reports whether name is a valid secret name.
func ValidSecretName(name string) bool { return secretNameRE.MatchString(name) }

func checkSecretName(name string) error {
	if !ValidSecretName(name) {
		return fmt.Errorf("%w: secret name %q: want 1-64 of [A-Za-z0-9._-]", api.ErrInvalid, name)
	}
	return nil
}

// SetSecret encrypts value and stores it as the machine's secret name,
// replacing any previous value.
func (m *Manager) SetSecret(ctx context.Context, ref, name string, value []byte) error {
	id, err := m.setSecret(ctx, ref, name, value)
	m.record(ctx, "secret-set", id, fmt.Sprintf("secret %q", name), err)
	return err
}

func (m *Manager) setSecret(ctx context.Context, ref, name string, value []byte) (id string, err error) {
	if err := checkSecretName(name); err != nil {
		return "", err
	}
	if len(value) == 0 || len(value) > MaxSecretSize {
		return "", fmt.Errorf("%w: secret value of %d bytes: want 1 to %d", api.ErrInvalid, len(value), MaxSecretSize)
	}
	if m.box == nil {
		return "", errors.New("set secret: no secrets box configured")
	}
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	ct, err := m.box.Encrypt(value)
	if err != nil {
		return mc.ID, fmt.Errorf("encrypt secret %q: %w", name, err)
	}
	return mc.ID, fromStore(m.store.PutSecret(ctx, mc.ID, name, ct))
}

// SecretNames lists the machine's secret names, sorted; never values.
func (m *Manager) SecretNames(ctx context.Context, ref string) ([]string, error) {
	id, names, err := m.secretNames(ctx, ref)
	m.record(ctx, "secret-list", id, "", err)
	return names, err
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
	id, err := m.deleteSecret(ctx, ref, name)
	m.record(ctx, "secret-delete", id, fmt.Sprintf("secret %q", name), err)
	return err
}

func (m *Manager) deleteSecret(ctx context.Context, ref, name string) (string, error) {
	if err := checkSecretName(name); err != nil {
		return "", err
	}
	mc, err := m.resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	return mc.ID, fromStore(m.store.DeleteSecret(ctx, mc.ID, name))
}

// PlainSecrets decrypts every secret of the machine with the exact ID
// machineID, for sealing into its credential. The caller must not log or
// keep the values. The release is audited (names count only).
func (m *Manager) PlainSecrets(ctx context.Context, machineID string) (map[string][]byte, error) {
	out, err := m.plainSecrets(ctx, machineID)
	m.record(ctx, "secret-release", machineID, fmt.Sprintf("%d secrets", len(out)), err)
	return out, err
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
