package rootnfs

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/wire"
)

// TestUserRoot_follows_its_user: a user's root is kept under the user's
// key and exported to the machine the user logs in on, one at a time;
// a let-go of a boot that is no longer the root's changes nothing.
func TestUserRoot_follows_its_user(t *testing.T) {
	l := newFakeLab(t)
	var ends []roots.UserRootEnd
	l.p.cfg.UserRootExported = func(e roots.UserRootEnd) { ends = append(ends, e) }
	ctx := context.Background()
	key := roots.UserRootKey("alice")

	plan, _, err := l.p.Prepare(ctx, userRequest(idA, addrA, "alice", "x1"))
	if err != nil {
		t.Fatalf("Prepare alice on A = %v", err)
	}
	if plan.Params[wire.NFSPath] != "/"+ExportName(key) {
		t.Errorf("plan path = %q, want the user's export /%s", plan.Params[wire.NFSPath], ExportName(key))
	}
	want := []nfs.Export{{ID: 1, Path: l.p.root(key), Name: ExportName(key), Client: netip.MustParseAddr(addrA)}}
	if got := l.exp.current(); !slices.Equal(got, want) {
		t.Errorf("exports = %+v, want alice's root to A only: %+v", got, want)
	}
	if _, err := os.Stat(l.p.dir(idA)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("machine A got a root of its own: %v", err)
	}
	if st := l.state(key); st.Holder != idA || st.User != "alice" || st.Exchange != "x1" {
		t.Errorf("state = %+v, want held by A for alice, exchange x1", st)
	}
	if want := []roots.UserRootEnd{{User: "alice", MachineID: idA, Exchange: "x1"}}; !slices.Equal(ends, want) {
		t.Errorf("reported %+v, want %+v (letgo watches A's tunnel from the export on)", ends, want)
	}
	if got := l.p.ServedUserRoots(); !slices.Equal(got, ends) {
		t.Errorf("ServedUserRoots = %+v, want %+v", got, ends)
	}
	writeFile(t, filepath.Join(l.p.upper(key), "mine"), "alice's\n")

	// A boots again, Bob logs in there: alice's root is no longer A's.
	if _, _, err := l.p.Prepare(ctx, userRequest(idA, addrA, "bob", "x2")); err != nil {
		t.Fatalf("Prepare bob on A = %v", err)
	}
	if exp := l.exp.current(); len(exp) != 1 || exp[0].Name != ExportName(roots.UserRootKey("bob")) {
		t.Errorf("exports after A's next boot = %+v, want bob's only", exp)
	}

	// Alice on B: her own upper, exported to B.
	if _, _, err := l.p.Prepare(ctx, userRequest(idB, addrB, "alice", "x3")); err != nil {
		t.Fatalf("Prepare alice on B = %v", err)
	}
	if m, ok := l.mnt.mount(l.p.root(key)); !ok || m.upper != l.p.upper(key) {
		t.Errorf("alice's mount = %+v, %v; want her own upper", m, ok)
	}
	if b, err := os.ReadFile(filepath.Join(l.p.upper(key), "mine")); err != nil || string(b) != "alice's\n" {
		t.Errorf("alice's change on B = %q, %v", b, err)
	}
	if ex := l.p.Exports()[key]; ex.Client.String() != addrB {
		t.Errorf("alice's export goes to %v, want B (%s)", ex.Client, addrB)
	}

	t.Run("let_go_of_an_old_boot_changes_nothing", func(t *testing.T) {
		err := l.p.WithdrawLetGo(ctx, roots.UserRootEnd{User: "alice", MachineID: idA, Exchange: "x1"})
		if !errors.Is(err, roots.ErrNotThatBoot) {
			t.Fatalf("WithdrawLetGo(A's boot) = %v, want ErrNotThatBoot", err)
		}
		if _, ok := l.p.Exports()[key]; !ok {
			t.Fatal("alice's export withdrawn by a stale let-go")
		}
	})
	t.Run("let_go_of_its_boot_withdraws", func(t *testing.T) {
		if err := l.p.WithdrawLetGo(ctx, roots.UserRootEnd{User: "alice", MachineID: idB, Exchange: "x3"}); err != nil {
			t.Fatalf("WithdrawLetGo(B's boot) = %v", err)
		}
		if _, ok := l.p.Exports()[key]; ok {
			t.Fatal("alice's export still there")
		}
		if err := l.p.WithdrawLetGo(ctx, roots.UserRootEnd{User: "alice", MachineID: idB, Exchange: "x3"}); err != nil {
			t.Fatalf("WithdrawLetGo of a root not exported = %v, want nil", err)
		}
	})
	t.Run("release_of_the_holder_withdraws", func(t *testing.T) {
		l.mustPrepareUser(idB, addrB, "alice", "x4")
		if err := l.p.Release(ctx, idB); err != nil {
			t.Fatal(err)
		}
		if _, ok := l.p.Exports()[key]; ok {
			t.Fatal("Release(B) left alice's export to B")
		}
	})
	t.Run("reset_snapshot_rollback_by_key", func(t *testing.T) {
		if err := l.p.Snapshot(ctx, key, "s1"); err != nil {
			t.Fatalf("Snapshot = %v", err)
		}
		if err := l.p.Reset(ctx, key, wire.RootPlan{Kind: wire.RootNFS}); err != nil {
			t.Fatalf("Reset = %v", err)
		}
		if _, err := os.Stat(filepath.Join(l.p.upper(key), "mine")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("after Reset alice's change is still there: %v", err)
		}
		if err := l.p.Rollback(ctx, key, "s1"); err != nil {
			t.Fatalf("Rollback = %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(l.p.upper(key), "mine")); err != nil || string(b) != "alice's\n" {
			t.Fatalf("after Rollback = %q, %v", b, err)
		}
		if ss, err := l.p.SnapshotInfo(key); err != nil || len(ss) != 1 || ss[0].Name != "s1" {
			t.Fatalf("SnapshotInfo = %+v, %v", ss, err)
		}
	})
}

func (l *fakeLab) mustPrepareUser(id, addr, user, exchange string) {
	l.t.Helper()
	if _, _, err := l.p.Prepare(context.Background(), userRequest(id, addr, user, exchange)); err != nil {
		l.t.Fatalf("Prepare(%.4s, %s) = %v", id, user, err)
	}
}

// userRequest is the root request of a boot of machine id on which user
// logged in, released by exchange.
func userRequest(id, addr, user, exchange string) roots.Request {
	m := machine(id, wire.RootNFS)
	m.Root.Params[wire.PerUserParam] = "true"
	req := request(m, tunnelOf(addr))
	req.Key, req.User, req.Exchange = roots.UserRootKey(user), user, exchange
	return req
}

// TestNFSUserRootFollowsUser runs a user's root over the kernel and a
// real ganesha: alice's write on machine A is hers on machine B once A
// let go, and neither machine reaches the root while the other holds it.
func TestNFSUserRootFollowsUser(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	key := roots.UserRootKey("alice")
	if _, _, err := l.p.Prepare(ctx, userRequest(idA, addrA, "alice", "x1")); err != nil {
		t.Fatalf("Prepare alice on A = %v", err)
	}
	l.mustRead(t, l.a, key, "/etc/os-release", "base tree\n")
	if err := l.write(l.a, key, "/mine", "alice's\n"); err != nil {
		t.Fatalf("alice writes on A: %v", err)
	}
	if _, err := l.read(l.b, key, "/mine"); err == nil {
		t.Fatal("B reads alice's root while A holds it")
	}
	if err := l.p.WithdrawLetGo(ctx, roots.UserRootEnd{User: "alice", MachineID: idA, Exchange: "x1"}); err != nil {
		t.Fatalf("WithdrawLetGo = %v", err)
	}
	if _, _, err := l.p.Prepare(ctx, userRequest(idB, addrB, "alice", "x2")); err != nil {
		t.Fatalf("Prepare alice on B = %v", err)
	}
	l.mustRead(t, l.b, key, "/mine", "alice's\n")
	if _, err := l.read(l.a, key, "/mine"); err == nil {
		t.Fatal("A still reads alice's root after it moved to B")
	}
	if n := l.restart(nil); n != 1 {
		t.Fatalf("Restore = %d roots, want alice's", n)
	}
	if got := l.p.ServedUserRoots(); len(got) != 1 || got[0].MachineID != idB || got[0].Exchange != "x2" {
		t.Fatalf("after a restart ServedUserRoots = %+v, want alice's on B", got)
	}
	l.mustRead(t, l.b, key, "/mine", "alice's\n")
}
