package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "identity.txt")
	box, err := LoadOrCreate(path)
	if err != nil {
		t.Fatalf("LoadOrCreate(new): %v", err)
	}
	if !strings.HasPrefix(box.Recipient(), "age1") {
		t.Errorf("Recipient = %q, want age1...", box.Recipient())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("identity mode = %v, want 0600", fi.Mode().Perm())
	}
	tests := []struct {
		name      string
		plaintext []byte
	}{
		{"empty", nil},
		{"short", []byte("hunter2")},
		{"64k", bytes.Repeat([]byte{0xa5}, 64<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := box.Encrypt(tt.plaintext)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if len(tt.plaintext) > 0 && bytes.Contains(ct, tt.plaintext) {
				t.Error("ciphertext contains the plaintext")
			}
			// A reloaded box (same file) decrypts.
			again, err := LoadOrCreate(path)
			if err != nil {
				t.Fatalf("LoadOrCreate(existing): %v", err)
			}
			if again.Recipient() != box.Recipient() {
				t.Fatalf("reloaded recipient %s, want %s", again.Recipient(), box.Recipient())
			}
			pt, err := again.Decrypt(ct)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !bytes.Equal(pt, tt.plaintext) {
				t.Errorf("Decrypt = %d bytes, want %d", len(pt), len(tt.plaintext))
			}
		})
	}
}

func TestWrongIdentity(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreate(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := a.Encrypt([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Decrypt(ct)
	var noMatch *age.NoIdentityMatchError
	if !errors.As(err, &noMatch) {
		t.Errorf("Decrypt with another identity = %v, want *age.NoIdentityMatchError", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := a.Decrypt(ct); err == nil {
		t.Error("Decrypt of a tampered ciphertext succeeded")
	}
}

func TestLoadRefuses(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr error // nil: any error
	}{
		{"world_readable", id.String(), 0o644, ErrPermissions},
		{"group_readable", id.String(), 0o640, ErrPermissions},
		{"garbage", "not an identity", 0o600, nil},
		{"empty", "", 0o600, nil},
		{"two_identities", id.String() + "\n" + id.String(), 0o600, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "identity.txt")
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // umask
				t.Fatal(err)
			}
			_, err := LoadOrCreate(path)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("LoadOrCreate = %v, want %v", err, tt.wantErr)
			}
			if got, _ := os.ReadFile(path); string(got) != tt.content {
				t.Error("LoadOrCreate changed a refused identity file")
			}
		})
	}
}

func TestLoadsAgeKeygenFormat(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.txt")
	content := "# created: 2026-01-01T00:00:00Z\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	box, err := LoadOrCreate(path)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	if box.Recipient() != id.Recipient().String() {
		t.Errorf("Recipient = %s, want %s", box.Recipient(), id.Recipient())
	}
	if strings.Contains(box.String(), "AGE-SECRET-KEY") {
		t.Error("String() shows the secret key")
	}
}
