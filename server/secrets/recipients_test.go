package secrets

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestEncryptToEveryRecipient(t *testing.T) {
	a, err := LoadOrCreate(filepath.Join(t.TempDir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(filepath.Join(t.TempDir(), "b"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadOrCreate(filepath.Join(t.TempDir(), "c"))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := EncryptTo([]string{a.Recipient(), b.Recipient()}, []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	for _, box := range []*Box{a, b} {
		if pt, err := box.Decrypt(ct); err != nil || string(pt) != "v" {
			t.Errorf("%v: Decrypt = %q, %v", box, pt, err)
		}
	}
	if _, err := c.Decrypt(ct); err == nil {
		t.Error("a box that is no recipient decrypted")
	}
	if _, err := EncryptTo(nil, []byte("v")); err == nil {
		t.Error("EncryptTo(no recipients) succeeded")
	}
	if _, err := EncryptTo([]string{a.Recipient(), "age1x"}, []byte("v")); !errors.Is(err, ErrBadRecipient) {
		t.Errorf("EncryptTo(bad) = %v, want ErrBadRecipient", err)
	}
}

func TestParseRecipient(t *testing.T) {
	a, err := LoadOrCreate(filepath.Join(t.TempDir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ParseRecipient(" " + a.Recipient() + "\n"); err != nil || r != a.Recipient() {
		t.Errorf("ParseRecipient(padded) = %q, %v", r, err)
	}
	_, err = ParseRecipient("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ")
	if !errors.Is(err, ErrBadRecipient) || strings.Contains(err.Error(), "QQQQ") {
		t.Errorf("ParseRecipient(identity) = %v, want ErrBadRecipient without echoing the identity", err)
	}
}
