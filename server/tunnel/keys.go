package tunnel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// loadOrCreateKey reads the base64 private key at path, or creates it
// (mode 0600) when missing. An empty path gives a fresh key.
func loadOrCreateKey(path string) (wgtypes.Key, error) {
	if path == "" {
		return newKey()
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("tunnel: read private key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("tunnel: private key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return wgtypes.Key{}, fmt.Errorf("tunnel: private key %s has mode %v: want 0600", path, fi.Mode().Perm())
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(raw)))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("tunnel: private key %s: %w", path, err)
	}
	return k, nil
}

func newKey() (wgtypes.Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("tunnel: generate key: %w", err)
	}
	return k, nil
}

func createKey(path string) (wgtypes.Key, error) {
	k, err := newKey()
	if err != nil {
		return k, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("tunnel: create private key: %w", err)
	}
	if _, err := f.WriteString(k.String() + "\n"); err != nil {
		f.Close()
		return wgtypes.Key{}, fmt.Errorf("tunnel: write private key: %w", err)
	}
	if err := f.Close(); err != nil {
		return wgtypes.Key{}, fmt.Errorf("tunnel: write private key: %w", err)
	}
	return k, nil
}
