package store

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// Migrate moves every record of a bbolt store into etcd: what the etcd
// store then returns is what bbolt returned, versions aside.
func TestMigrateBBoltToEtcd(t *testing.T) {
	ctx := context.Background()
	src, _ := openTestDB(t)
	dst := openTestEtcd(t)
	if err := src.PutGroup(ctx, &Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	if err := src.PutFile(ctx, FileOwner{Group: "lab"}, &File{Path: "/etc/motd", Mode: 0o644, Content: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		m := testMachine(i)
		if i == 0 {
			m.Group = "lab"
		}
		if err := src.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
		if _, err := src.UpdateMachine(ctx, m.ID, func(m *Machine) error {
			m.BootCount, m.ResetCount, m.State = 7, 3, StateApproved
			m.AddAttempt(BootAttempt{Time: time.Unix(1, 0).UTC(), Outcome: "allowed"})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := src.PutSecret(ctx, m.ID, "root-password", []byte("age-ciphertext")); err != nil {
			t.Fatal(err)
		}
		for j := range 2 {
			if err := src.PutBootLog(ctx, m.ID, BootLog{Time: time.Unix(int64(j), 0).UTC(), Log: "boot"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	m0 := testMachine(0)
	if err := src.ClaimUserLease(ctx, "ada", m0.ID, "x1", time.Unix(5, 0).UTC()); err != nil {
		t.Fatal(err)
	}
	if _, err := src.ReleaseWithLease(ctx, m0.ID, "ada", "x1", func(m *Machine) error { m.BootCount++; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := src.PutUser(ctx, &User{Name: "ada", Hash: "argon2id$x"}, true); err != nil {
		t.Fatal(err)
	}
	if err := src.PutDHCPLease(ctx, DHCPLease{MAC: "52:54:00:00:00:01", Addr: netip.MustParseAddr("10.0.0.5"), Expiry: time.Unix(9, 0).UTC()}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Reserve(ctx, DHCPReservation{MAC: "52:54:00:00:00:02", Addr: netip.MustParseAddr("10.0.0.6")}); err != nil {
		t.Fatal(err)
	}

	surveyed, err := Survey(ctx, src)
	if err != nil {
		t.Fatalf("Survey: %v", err)
	}
	n, err := Migrate(ctx, src, dst)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	want := MigrateCounts{Machines: 3, Secrets: 3, Groups: 1, Files: 1, Users: 1, Leases: 1, Reservations: 1,
		BootLogs: 6, Attempts: 3, UserLeases: 1}
	if n != want || surveyed != want {
		t.Errorf("Migrate counts = %+v, Survey %+v, want %+v", n, surveyed, want)
	}
	before, _ := src.Machines(ctx)
	after, err := dst.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("etcd has %d machines, bbolt %d", len(after), len(before))
	}
	for i := range before {
		b, a := before[i], after[i]
		b.Version, a.Version = 0, 0
		if !reflect.DeepEqual(a, b) {
			t.Errorf("machine %s differs after migration:\n got %+v\nwant %+v", b.ID, a, b)
		}
		bl, _ := src.BootLogs(ctx, b.ID)
		al, err := dst.BootLogs(ctx, b.ID)
		if err != nil || !reflect.DeepEqual(al, bl) {
			t.Errorf("boot logs of %s = %v, %v; want %v", b.ID, al, err, bl)
		}
		ct, err := dst.Secret(ctx, b.ID, "root-password")
		if err != nil || string(ct) != "age-ciphertext" {
			t.Errorf("secret of %s = %q, %v; want the ciphertext as stored", b.ID, ct, err)
		}
	}
	if fs, err := dst.Files(ctx, FileOwner{Group: "lab"}); err != nil || len(fs) != 1 || string(fs[0].Content) != "hi" {
		t.Errorf("group files after migration = %v, %v", fs, err)
	}
	if u, err := dst.User(ctx, "ada"); err != nil || u.Hash != "argon2id$x" {
		t.Errorf("user after migration = %+v, %v", u, err)
	}
	bl, _ := src.UserLeases(ctx)
	if al, err := dst.UserLeases(ctx); err != nil || !reflect.DeepEqual(al, bl) {
		t.Errorf("user leases after migration = %v, %v; want %v", al, err, bl)
	}
	// The copied lease is the released boot's: a let-go frees it on etcd.
	if _, err := dst.FreeLetGoLease(ctx, "ada", m0.ID, "x1"); err != nil {
		t.Errorf("let-go of the migrated lease: %v", err)
	}
	if ls, err := dst.DHCPLeases(ctx); err != nil || len(ls) != 1 {
		t.Errorf("leases after migration = %v, %v", ls, err)
	}
	// A second run refuses: the destination is no longer empty.
	if _, err := Migrate(ctx, src, dst); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("second Migrate = %v, want ErrNotEmpty", err)
	}
}
