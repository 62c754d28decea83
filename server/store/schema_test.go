package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeV1 writes a schema 1 database as sealroot wrote it before DHCP
// leases: the five buckets, version "1" and one machine.
func writeV1(t *testing.T, path string, m *Machine) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Update(func(tx *bolt.Tx) error {
		for _, n := range []string{"meta", "machines", "names", "secrets", "groups"} {
			if _, err := tx.CreateBucket([]byte(n)); err != nil {
				return err
			}
		}
		raw, _ := json.Marshal(m)
		tx.Bucket([]byte("machines")).Put([]byte(m.ID), raw)
		tx.Bucket([]byte("names")).Put([]byte(m.Name), []byte(m.ID))
		return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A schema 1 database is migrated forward and keeps its records; a
// database of a newer schema is refused as such, not as corrupt.
func TestSchemaMigrationAndNewer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	m := testMachine(7)
	writeV1(t, path, m)
	db, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open(schema 1) = %v", err)
	}
	if got, err := db.Machine(ctx, m.ID); err != nil || got.Name != m.Name {
		t.Fatalf("machine after migration = %+v, %v", got, err)
	}
	l := DHCPLease{MAC: "52:54:00:00:00:01", Addr: netip.MustParseAddr("192.0.2.10"), Expiry: time.Unix(1800000000, 0).UTC()}
	if err := db.PutDHCPLease(ctx, l); err != nil {
		t.Fatalf("PutDHCPLease after migration = %v", err)
	}
	db.Close()

	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v string
	b.Update(func(tx *bolt.Tx) error {
		v = string(tx.Bucket([]byte("meta")).Get([]byte("version")))
		return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte("99"))
	})
	b.Close()
	if v != "4" {
		t.Fatalf("version after migration = %q, want 4", v)
	}
	_, err = Open(path, nil)
	if !errors.Is(err, ErrNewerSchema) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "newer sealroot") {
		t.Fatalf("Open(schema 99) = %v, want ErrNewerSchema saying so", err)
	}
}

// Leases and reservations persist; a reserved address is not given to
// another MAC; WriteTo copies a database that opens with its records.
func TestDHCPRecordsAndBackup(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	a := netip.MustParseAddr("192.0.2.10")
	for _, l := range []DHCPLease{{MAC: "m1", Addr: a}, {MAC: "m1", Addr: netip.MustParseAddr("192.0.2.11")}, {MAC: "m2", Addr: a}} {
		if err := db.PutDHCPLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	ls, err := db.DHCPLeases(ctx)
	if err != nil || len(ls) != 2 {
		t.Fatalf("DHCPLeases = %+v, %v; want m2 on .10, m1 on .11", ls, err)
	}
	if _, err := db.Reserve(ctx, DHCPReservation{MAC: "52:54:00:AA:00:01", Addr: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Reserve(ctx, DHCPReservation{MAC: "52:54:00:aa:00:02", Addr: a}); !errors.Is(err, ErrReserved) {
		t.Fatalf("Reserve(taken) = %v, want ErrReserved", err)
	}
	if _, err := db.Reserve(ctx, DHCPReservation{MAC: "nope", Addr: a}); !errors.Is(err, ErrBadReservation) {
		t.Fatalf("Reserve(bad MAC) = %v, want ErrBadReservation", err)
	}
	if err := db.CreateMachine(ctx, testMachine(1)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := db.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	os.WriteFile(copyPath, buf.Bytes(), 0o600)
	cp, err := Open(copyPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	rs, err := cp.DHCPReservations(ctx)
	if err != nil || len(rs) != 1 || rs[0].MAC != "52:54:00:aa:00:01" {
		t.Fatalf("reservations in the copy = %+v, %v", rs, err)
	}
	if _, err := cp.Machine(ctx, testMachine(1).ID); err != nil {
		t.Fatalf("machine in the copy: %v", err)
	}
	if err := cp.Unreserve(ctx, "52:54:00:aa:00:01"); err != nil {
		t.Fatal(err)
	}
	if err := cp.Unreserve(ctx, "52:54:00:aa:00:01"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Unreserve twice = %v, want ErrNotFound", err)
	}
}
