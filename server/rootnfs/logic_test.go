package rootnfs

// Tests of the provider's logic over fakeMounter, fakeImages and
// fakeExporter: no root needed. provider_test.go runs the same provider
// over the kernel and a real ganesha, as root.

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/wire"
)

func TestPrepare_nfs_mounts_overlay_and_exports_it(t *testing.T) {
	l := newFakeLab(t)
	plan, secrets, err := l.p.Prepare(context.Background(), request(machine(idA, wire.RootNFS), tunnelOf(addrA)))
	if err != nil || secrets != nil {
		t.Fatalf("Prepare = %v, %v", secrets, err)
	}
	want := map[string]string{wire.NFSServer: serverAddr, wire.NFSPath: "/" + ExportName(idA), wire.NFSVersion: Version, wire.NFSPort: "2049"}
	if plan.Kind != wire.RootNFS || !maps.Equal(plan.Params, want) {
		t.Errorf("plan = %+v, want kind nfs, params %v", plan, want)
	}
	root := l.p.root(idA)
	if m, ok := l.mnt.mount(root); !ok || m.lower != treeOf(digest1) || m.upper != l.p.upper(idA) {
		t.Errorf("mount at root = %+v, %v; want an overlay of base 1 under the machine's upper", m, ok)
	}
	wantExp := []nfs.Export{{ID: 1, Path: root, Name: ExportName(idA), Client: netip.MustParseAddr(addrA)}}
	if got := l.exp.current(); !slices.Equal(got, wantExp) {
		t.Errorf("exports = %+v, want %+v", got, wantExp)
	}
	if st := l.state(idA); st.Base != digest1 || st.Lower != digest1 || !st.Exported || st.Volatile {
		t.Errorf("state = %+v, want base and lower 1, exported", st)
	}
}

// Machines booting together do not wait for each other's export to be
// served: the second machine's export is written while the first one's
// reload is still under way, so that one reload serves both (with the
// provider's lock held across the wait, a storm of N machines took N
// reloads one after the other).
func TestPrepare_writes_while_an_export_is_being_served(t *testing.T) {
	l := newFakeLab(t)
	l.exp.serving = make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for _, m := range []struct{ id, addr string }{{idA, addrA}, {idB, addrB}} {
		go func() {
			_, _, err := l.p.Prepare(ctx, request(machine(m.id, wire.RootNFS), tunnelOf(m.addr)))
			errs <- err
		}()
	}
	for l.exp.written() < 2 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if n := l.exp.written(); n != 2 {
		t.Errorf("while the first export was being served, %d export sets were written; want 2 (both machines')", n)
	}
	close(l.exp.serving)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("Prepare = %v", err)
		}
	}
	if got := l.exp.current(); len(got) != 2 {
		t.Errorf("exports = %+v, want both machines'", got)
	}
}

func TestPrepare_volatile_binds_read_only(t *testing.T) {
	l := newFakeLab(t)
	plan, _, err := l.p.Prepare(context.Background(), request(machine(idA, wire.RootVolatile), tunnelOf(addrA)))
	if err != nil {
		t.Fatal(err)
	}
	if plan.Kind != wire.RootVolatile || plan.Params[wire.VolatileVia] != wire.ViaNFS {
		t.Errorf("plan = %+v, want volatile via nfs", plan)
	}
	if m, ok := l.mnt.mount(l.p.root(idA)); !ok || m.upper != "" || m.lower != treeOf(digest1) {
		t.Errorf("mount = %+v, %v; want a bind of base 1", m, ok)
	}
	if exp := l.exp.current(); len(exp) != 1 || !exp[0].ReadOnly {
		t.Errorf("exports = %+v, want one read-only export", exp)
	}
	if st := l.state(idA); st.Base != "" || !st.Volatile {
		t.Errorf("state = %+v, want no base (nothing persists), volatile", st)
	}
	// The next image is used at the next boot.
	l.images.set("base", digest2)
	l.mustPrepare(idA, wire.RootVolatile, addrA)
	if m, _ := l.mnt.mount(l.p.root(idA)); m.lower != treeOf(digest2) {
		t.Errorf("after an image update, volatile root binds %s, want base 2", m.lower)
	}
}

func TestPrepare_refusals(t *testing.T) {
	l := newFakeLab(t)
	ctx := context.Background()
	noImage := machine(idA, wire.RootNFS)
	noImage.Root.Params = nil
	unknown := machine(idA, wire.RootNFS)
	unknown.Root.Params[wire.ImageParam] = "nope"
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"bad_id", prepareErr(l.p.Prepare(ctx, request(machine("ABC", wire.RootNFS), tunnelOf(addrA)))), ErrBadName},
		{"no_tunnel", prepareErr(l.p.Prepare(ctx, request(machine(idA, wire.RootNFS), nil))), ErrNeedsTunnel},
		{"no_image", prepareErr(l.p.Prepare(ctx, request(noImage, tunnelOf(addrA)))), ErrNoImage},
		{"unknown_image", prepareErr(l.p.Prepare(ctx, request(unknown, tunnelOf(addrA)))), image.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("Prepare = %v, want %v", tt.err, tt.want)
			}
		})
	}
	if exp := l.exp.current(); len(exp) != 0 {
		t.Errorf("exports after refusals = %+v, want none", exp)
	}
}

func TestPrepare_image_changed_is_refused_until_reset(t *testing.T) {
	l := newFakeLab(t)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	l.images.set("base", digest2)
	err := l.prepare(idA, wire.RootNFS, addrA)
	if !errors.Is(err, ErrImageChanged) || !strings.Contains(err.Error(), "sealroot machine reset") {
		t.Fatalf("Prepare after an image change = %v, want ErrImageChanged naming the reset", err)
	}
	if m, _ := l.mnt.mount(l.p.root(idA)); m.lower != treeOf(digest1) {
		t.Errorf("refused Prepare remounted: lower %s, want base 1 untouched", m.lower)
	}
	if err := l.p.Reset(context.Background(), idA, wire.RootPlan{}); err != nil {
		t.Fatalf("Reset = %v", err)
	}
	if _, ok := l.mnt.mount(l.p.root(idA)); ok {
		t.Error("Reset left the root mounted")
	}
	if exp := l.exp.current(); len(exp) != 0 {
		t.Errorf("Reset left exports %+v", exp)
	}
	l.mustPrepare(idA, wire.RootNFS, addrA)
	if st := l.state(idA); st.Base != digest2 {
		t.Errorf("after reset, base = %s, want base 2", st.Base)
	}
}

func TestPrepare_base_changed_on_disk(t *testing.T) {
	l := newFakeLab(t)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	// The upper is tied to base 1; pretend the state lost that (a base
	// replaced under the same digest): the kernel still refuses.
	st := l.state(idA)
	st.Base, st.Lower = digest2, digest2
	if err := l.p.save(st); err != nil {
		t.Fatal(err)
	}
	p := l.provider()
	l.p.Close()
	l.images.set("base", digest2)
	_, _, err := p.Prepare(context.Background(), request(machine(idA, wire.RootNFS), tunnelOf(addrA)))
	if !errors.Is(err, nfs.ErrBaseChanged) {
		t.Fatalf("Prepare = %v, want nfs.ErrBaseChanged", err)
	}
}

func TestPrepare_other_kind_withdraws(t *testing.T) {
	l := newFakeLab(t)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	iscsi := machine(idA, wire.RootISCSI)
	rs := roots.New(roots.Config{Providers: map[string]roots.Provider{roots.KindNFS: l.p, roots.KindVolatileNFS: l.p}})
	plan, _, err := rs.Prepare(context.Background(), request(iscsi, tunnelOf(addrA)))
	if err != nil || plan.Kind != wire.RootISCSI || !maps.Equal(plan.Params, iscsi.Root.Params) {
		t.Fatalf("Prepare(iscsi) = %+v, %v; want the plan as is", plan, err)
	}
	if exp := l.exp.current(); len(exp) != 0 {
		t.Errorf("exports = %+v, want the nfs export withdrawn", exp)
	}
	if st := l.state(idA); st.Exported {
		t.Error("state still exported")
	}
}

func TestRelease_withdraws_and_keeps_mount(t *testing.T) {
	l := newFakeLab(t)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	l.mustPrepare(idB, wire.RootVolatile, addrB)
	if err := l.p.Release(context.Background(), idA); err != nil {
		t.Fatal(err)
	}
	exp := l.exp.current()
	if len(exp) != 1 || exp[0].Name != ExportName(idB) || exp[0].ID != 2 {
		t.Errorf("exports = %+v, want B's (export ID 2) only", exp)
	}
	if _, ok := l.mnt.mount(l.p.root(idA)); !ok {
		t.Error("Release unmounted the root; ganesha may still hold its files")
	}
	// Releasing again, or a machine that has none, is a no-op.
	calls := len(l.exp.calls)
	if err := errors.Join(l.p.Release(context.Background(), idA), l.p.Release(context.Background(), idC)); err != nil || len(l.exp.calls) != calls {
		t.Errorf("second Release = %v, %d export updates; want nil, none", err, len(l.exp.calls)-calls)
	}
	// The machine keeps its export ID at its next boot.
	l.mustPrepare(idA, wire.RootNFS, addrA)
	if exp := l.exp.current(); len(exp) != 2 || exp[0].ID != 1 || exp[0].Name != ExportName(idA) {
		t.Errorf("exports = %+v, want A back as export 1, in ID order", exp)
	}
}

func TestPrepare_exporter_failure(t *testing.T) {
	l := newFakeLab(t)
	l.exp.failErr = errFakeExport
	if err := l.prepare(idA, wire.RootNFS, addrA); !errors.Is(err, errFakeExport) {
		t.Fatalf("Prepare = %v, want the exporter's error", err)
	}
}

func TestReset_busy_root_detaches_lazily(t *testing.T) {
	l := newFakeLab(t)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	root := l.p.root(idA)
	l.mnt.setBusy(root) // ganesha holds files of the last boot
	if err := l.p.Reset(context.Background(), idA, wire.RootPlan{}); err != nil {
		t.Fatalf("Reset = %v", err)
	}
	if !slices.Equal(l.mnt.lazy, []string{root}) {
		t.Errorf("lazy detaches = %q, want the busy root", l.mnt.lazy)
	}
	// The detached overlay still holds the upper: the next boot is told
	// to retry, and succeeds once the leases expired.
	err := l.prepare(idA, wire.RootNFS, addrA)
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "retry shortly") {
		t.Fatalf("Prepare while held = %v, want EBUSY with a retry hint", err)
	}
	l.mnt.releaseHeld()
	l.mustPrepare(idA, wire.RootNFS, addrA)
}

func TestRestore_after_restart(t *testing.T) {
	l := newFakeLab(t)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	l.mustPrepare(idB, wire.RootVolatile, addrB)
	l.mustPrepare(idC, wire.RootNFS, addrC)
	if err := l.p.Release(context.Background(), idC); err != nil {
		t.Fatal(err)
	}
	if err := l.p.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	for _, id := range []string{idA, idB, idC} {
		if _, ok := l.mnt.mount(l.p.root(id)); ok {
			t.Errorf("Close left %.4s mounted", id)
		}
	}
	// B's image moved on; its volatile root restores on the tree it had.
	l.images.set("base", digest2)
	l.p = l.provider()
	n, err := l.p.Restore(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("Restore = %d, %v; want A and B", n, err)
	}
	exp := l.exp.current()
	if len(exp) != 2 || exp[0].Name != ExportName(idA) || exp[1].Name != ExportName(idB) || !exp[1].ReadOnly {
		t.Errorf("restored exports = %+v", exp)
	}
	if m, _ := l.mnt.mount(l.p.root(idB)); m.lower != treeOf(digest1) {
		t.Errorf("B restored on %s, want the tree it was exported with", m.lower)
	}
	if _, ok := l.mnt.mount(l.p.root(idC)); ok {
		t.Error("Restore mounted the withdrawn root of C")
	}
}

func TestRestore_unrestorable_root_stays_withdrawn(t *testing.T) {
	l := newFakeLab(t)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	l.mustPrepare(idB, wire.RootNFS, addrB)
	l.p.Close()
	st := l.state(idA)
	st.Lower = digest2 // A's upper was made on base 1
	if err := l.p.save(st); err != nil {
		t.Fatal(err)
	}
	l.p = l.provider()
	n, err := l.p.Restore(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Restore = %d, %v; want B only", n, err)
	}
	if st := l.state(idA); st.Exported {
		t.Error("unrestorable root still recorded as exported")
	}
}

func TestSnapshot_rollback_and_bases(t *testing.T) {
	l := newFakeLab(t)
	ctx := context.Background()
	if err := l.p.Snapshot(ctx, idA, "s1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Snapshot without a root = %v, want ErrNotFound", err)
	}
	l.mustPrepare(idA, wire.RootNFS, addrA)
	file := filepath.Join(l.p.upper(idA), "etc-hostname")
	writeFile(t, file, "one")
	if err := l.p.Snapshot(ctx, idA, "s1"); err != nil {
		t.Fatalf("Snapshot = %v", err)
	}
	if _, ok := l.mnt.mount(l.p.root(idA)); !ok {
		t.Error("Snapshot unmounted the root; only its export is withdrawn")
	}
	if err := l.p.Snapshot(ctx, idA, "s1"); !errors.Is(err, ErrExists) {
		t.Errorf("Snapshot again = %v, want ErrExists", err)
	}
	for _, bad := range []string{"", "../x", ".hidden", strings.Repeat("a", 65)} {
		if err := l.p.Snapshot(ctx, idA, bad); !errors.Is(err, ErrBadName) {
			t.Errorf("Snapshot(%q) = %v, want ErrBadName", bad, err)
		}
	}
	if names, err := l.p.Snapshots(idA); err != nil || !slices.Equal(names, []string{"s1"}) {
		t.Errorf("Snapshots = %q, %v", names, err)
	}

	// Reset, move to base 2, then roll back: the changes and base 1 return.
	if err := l.p.Reset(ctx, idA, wire.RootPlan{}); err != nil {
		t.Fatal(err)
	}
	l.images.set("base", digest2)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	if bases, err := l.p.Bases(); err != nil || !bases[digest1] || !bases[digest2] || len(bases) != 2 {
		t.Errorf("Bases = %v, %v; want base 2 (mounted) and base 1 (snapshot s1)", bases, err)
	}
	if err := l.p.Rollback(ctx, idA, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Rollback(nope) = %v, want ErrNotFound", err)
	}
	if err := l.p.Rollback(ctx, idA, "s1"); err != nil {
		t.Fatalf("Rollback = %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "one" {
		t.Errorf("after rollback, upper file = %q, %v; want the snapshot's", b, err)
	}
	if st := l.state(idA); st.Base != digest1 {
		t.Errorf("after rollback, base = %s, want the snapshot's (1)", st.Base)
	}
	if err := l.prepare(idA, wire.RootNFS, addrA); !errors.Is(err, ErrImageChanged) {
		t.Errorf("Prepare after rolling back to base 1 while the image is base 2 = %v, want ErrImageChanged", err)
	}
	if !l.p.InUse(digest1) || l.p.InUse("ffff") {
		t.Error("InUse does not match Bases")
	}
}

func TestDelete(t *testing.T) {
	l := newFakeLab(t)
	ctx := context.Background()
	l.mustPrepare(idA, wire.RootNFS, addrA)
	if !l.p.Has(idA) || l.p.Has(idB) {
		t.Fatal("Has does not match the prepared roots")
	}
	if err := l.p.Delete(ctx, idA); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if l.p.Has(idA) {
		t.Error("Has after Delete")
	}
	if _, err := os.Stat(l.p.dir(idA)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("machine directory after Delete: %v", err)
	}
	if _, ok := l.mnt.mount(l.p.root(idA)); ok {
		t.Error("Delete left the root mounted")
	}
	if err := l.p.Delete(ctx, idA); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete again = %v, want ErrNotFound", err)
	}
	if err := l.p.Delete(ctx, "../etc"); !errors.Is(err, ErrBadName) {
		t.Errorf("Delete(../etc) = %v, want ErrBadName", err)
	}
}

func TestMountFailure_keeps_state(t *testing.T) {
	l := newFakeLab(t)
	l.mnt.failErr = &os.PathError{Op: "mount", Path: "x", Err: unix.EPERM}
	if err := l.prepare(idA, wire.RootNFS, addrA); !errors.Is(err, unix.EPERM) {
		t.Fatalf("Prepare = %v, want the mount error", err)
	}
	if exp := l.exp.current(); len(exp) != 0 {
		t.Errorf("exports after a failed mount = %+v", exp)
	}
	if _, err := l.p.load(idA); !errors.Is(err, ErrNotFound) {
		t.Errorf("state after a failed first mount: %v, want none saved", err)
	}
}

func prepareErr(_ wire.RootPlan, _ map[string][]byte, err error) error { return err }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Hold refuses an exported machine whose peer is active (every exported
// machine without Config.Active); otherwise it withdraws and unmounts the
// root, and refuses the machine's boots and operations until released.
func TestHold(t *testing.T) {
	ctx := context.Background()
	l := newFakeLab(t)
	l.mustPrepare(idA, wire.RootNFS, addrA)
	if _, err := l.p.Hold(ctx, idA); !errors.Is(err, roots.ErrInUse) {
		t.Fatalf("Hold of an exported machine = %v, want ErrInUse", err)
	}
	if len(l.exp.current()) != 1 {
		t.Fatal("refused Hold withdrew the export")
	}
	l.p.cfg.Active = func(string) bool { return false }
	release, err := l.p.Hold(ctx, idA)
	if err != nil {
		t.Fatalf("Hold of an idle machine: %v", err)
	}
	if _, ok := l.mnt.mount(l.p.root(idA)); ok || len(l.exp.current()) != 0 {
		t.Error("Hold left the root mounted or exported")
	}
	if _, err := l.p.Hold(ctx, idA); !errors.Is(err, roots.ErrInUse) {
		t.Errorf("second Hold = %v, want ErrInUse", err)
	}
	if err := prepareErr(l.p.Prepare(ctx, request(machine(idA, wire.RootNFS), tunnelOf(addrA)))); !errors.Is(err, roots.ErrInUse) {
		t.Errorf("Prepare while held = %v, want ErrInUse", err)
	}
	if err := l.p.Snapshot(ctx, idA, "s1"); !errors.Is(err, roots.ErrInUse) {
		t.Errorf("Snapshot while held = %v, want ErrInUse", err)
	}
	release()
	release()
	l.mustPrepare(idA, wire.RootNFS, addrA)
}
