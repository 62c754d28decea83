package store

import (
	"context"
	"errors"
	"testing"
)

type keyringTestStore interface {
	testStore
	KeyringStore
}

func TestKeyring(t *testing.T) {
	forEachStore(t, func(t *testing.T, s testStore) { testKeyring(t, s.(keyringTestStore)) })
}

func testKeyring(t *testing.T, s keyringTestStore) {
	ctx := context.Background()
	if k, err := s.Keyring(ctx); err != nil || k.Version != 0 || len(k.Recipients) != 0 {
		t.Fatalf("Keyring of a new store = %+v, %v; want version 0, none", k, err)
	}
	k1, err := s.SetKeyring(ctx, 0, []string{"age1a"})
	if err != nil || k1.Version != 1 {
		t.Fatalf("SetKeyring(0) = %+v, %v", k1, err)
	}
	if _, err := s.SetKeyring(ctx, 0, []string{"age1b"}); !errors.Is(err, ErrKeyringChanged) {
		t.Errorf("SetKeyring from a stale version = %v, want ErrKeyringChanged", err)
	}
	if _, err := s.SetKeyring(ctx, 1, nil); err == nil {
		t.Error("SetKeyring to no recipients succeeded")
	}
	m := testMachine(1)
	if err := s.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSecretSealed(ctx, m.ID, "x", []byte("ct1"), 1); err != nil {
		t.Fatalf("PutSecretSealed at the current version: %v", err)
	}
	k2, err := s.SetKeyring(ctx, 1, []string{"age1a", "age1b"})
	if err != nil || k2.Version != 2 || len(k2.Recipients) != 2 {
		t.Fatalf("SetKeyring(1) = %+v, %v", k2, err)
	}
	// Encrypted to the old list: refused, nothing changed.
	if err := s.PutSecretSealed(ctx, m.ID, "x", []byte("stale"), 1); !errors.Is(err, ErrKeyringChanged) {
		t.Errorf("PutSecretSealed to an old keyring = %v, want ErrKeyringChanged", err)
	}
	if ct, _ := s.Secret(ctx, m.ID, "x"); string(ct) != "ct1" {
		t.Errorf("secret after a refused put = %q, want ct1", ct)
	}
	before, _ := s.Machine(ctx, m.ID)
	if err := s.RewrapSecret(ctx, m.ID, "x", []byte("other"), []byte("ct2"), 2); !errors.Is(err, ErrSecretChanged) {
		t.Errorf("RewrapSecret of a changed ciphertext = %v, want ErrSecretChanged", err)
	}
	if err := s.RewrapSecret(ctx, m.ID, "x", []byte("ct1"), []byte("ct2"), 1); !errors.Is(err, ErrKeyringChanged) {
		t.Errorf("RewrapSecret to an old keyring = %v, want ErrKeyringChanged", err)
	}
	if err := s.RewrapSecret(ctx, m.ID, "nope", []byte("ct1"), []byte("ct2"), 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("RewrapSecret of a missing secret = %v, want ErrNotFound", err)
	}
	if err := s.RewrapSecret(ctx, m.ID, "x", []byte("ct1"), []byte("ct2"), 2); err != nil {
		t.Fatalf("RewrapSecret: %v", err)
	}
	if ct, _ := s.Secret(ctx, m.ID, "x"); string(ct) != "ct2" {
		t.Errorf("secret after rewrap = %q, want ct2", ct)
	}
	m2 := testMachine(2)
	if err := s.CreateMachine(ctx, m2); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.SecretMachines(ctx); err != nil || len(ids) != 1 || ids[0] != m.ID {
		t.Errorf("SecretMachines = %v, %v; want only the machine with a secret", ids, err)
	}
	if after, _ := s.Machine(ctx, m.ID); after.Version != before.Version {
		t.Errorf("rewrap changed the machine version %d -> %d (the value is the same)", before.Version, after.Version)
	}
}

func TestMigrateCopiesKeyring(t *testing.T) {
	ctx := context.Background()
	src, _ := openTestDB(t)
	if _, err := src.SetKeyring(ctx, 0, []string{"age1a", "age1b"}); err != nil {
		t.Fatal(err)
	}
	dst := openTestEtcd(t)
	if _, err := Migrate(ctx, src, dst); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	k, err := dst.Keyring(ctx)
	if err != nil || len(k.Recipients) != 2 || k.Recipients[1] != "age1b" {
		t.Errorf("migrated keyring = %+v, %v; want the source's two recipients", k, err)
	}
}
