package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUsers(t *testing.T) { forEachStore(t, testUsers) }

func testUsers(t *testing.T, db testStore) {
	ctx := context.Background()
	if us, err := db.Users(ctx); err != nil || len(us) != 0 {
		t.Fatalf("Users of a new store: %v, %v", us, err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := db.PutUser(ctx, &User{Name: "bob", Hash: "h1", Created: t0, Changed: t0}, true); err != nil {
		t.Fatal(err)
	}
	if err := db.PutUser(ctx, &User{Name: "alice", Hash: "h2", Created: t0, Changed: t0}, true); err != nil {
		t.Fatal(err)
	}
	if err := db.PutUser(ctx, &User{Name: "bob", Hash: "x"}, true); !errors.Is(err, ErrUserExists) {
		t.Errorf("second create: %v, want ErrUserExists", err)
	}
	if err := db.PutUser(ctx, &User{Name: "carol", Hash: "x"}, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing user: %v, want ErrNotFound", err)
	}
	t1 := t0.Add(time.Hour)
	if err := db.PutUser(ctx, &User{Name: "bob", Hash: "h3", Created: t1, Changed: t1}, false); err != nil {
		t.Fatal(err)
	}
	u, err := db.User(ctx, "bob")
	if err != nil || u.Hash != "h3" || !u.Created.Equal(t0) || !u.Changed.Equal(t1) {
		t.Errorf("bob after a password change: %+v, %v", u, err)
	}
	us, _ := db.Users(ctx)
	if len(us) != 2 || us[0].Name != "alice" || us[1].Name != "bob" {
		t.Errorf("Users not sorted: %+v", us)
	}
	if err := db.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteUser(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := db.User(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted user: %v", err)
	}
	if _, err := db.User(ctx, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty name: %v", err)
	}
}
