package machines

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sealroot/sealroot/server/keyring"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// Two servers' Managers on one etcd, each with its own identity: a secret
// set through A is sealed to the keyring, which B joins; B then loads it
// for sealing into a credential.
func TestSecretsAcrossServers(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	prefix := etcdtest.Prefix(t)
	server := func(name string) (*Manager, *keyring.Keyring, *store.Etcd) {
		st, err := store.NewEtcd(ctx, c.Client(), prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		box, err := secrets.LoadOrCreate(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		k := keyring.New(st, box, nil)
		if _, err := k.Init(ctx); err != nil {
			t.Fatal(err)
		}
		return New(Config{Store: st, Box: box, Keyring: k}), k, st
	}
	a, ka, stA := server("a")
	b, kb, _ := server("b")
	m := &store.Machine{ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", State: store.StatePending,
		EKPublic: []byte{1}, AKPublic: []byte{2}, Policy: store.PolicyPinned, FirstSeen: time.Now()}
	if err := stA.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := a.SetSecret(ctx, m.ID, "chap", []byte("v1")); err != nil {
		t.Fatalf("SetSecret on A: %v", err)
	}
	var nm *age.NoIdentityMatchError
	if _, err := b.PlainSecrets(ctx, m.ID); !errors.As(err, &nm) {
		t.Fatalf("B before join: PlainSecrets = %v, want no identity match", err)
	}
	if _, err := ka.Join(ctx, kb.Recipient()); err != nil {
		t.Fatal(err)
	}
	got, err := b.PlainSecrets(ctx, m.ID)
	if err != nil || string(got["chap"]) != "v1" {
		t.Fatalf("B after join: PlainSecrets = %q, %v", got["chap"], err)
	}
	if err := b.SetSecret(ctx, m.ID, "chap", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if got, err := a.PlainSecrets(ctx, m.ID); err != nil || string(got["chap"]) != "v2" {
		t.Errorf("A reads B's value = %q, %v", got["chap"], err)
	}
}
