package rootnfs

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

const (
	serverAddr = "10.232.0.1"
	addrA      = "10.232.0.2"
	addrB      = "10.232.0.3"
	// Machine IDs are hex SHA-256 digests of EK public areas.
	idA = "aaaa000000000000000000000000000000000000000000000000000000000001"
	idB = "bbbb000000000000000000000000000000000000000000000000000000000002"
)

// requireTools skips t unless it runs as root with ganesha, libnfs's
// tools and mkfs.ext4 installed; under CI=true it fails instead.
func requireTools(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t)
	testenv.RequireTools(t, "ganesha.nfsd", "nfs-cat", "nfs-ls", "nfs-cp", "nsenter", "mkfs.ext4", "cp")
}

// lab is a real ganesha in a server namespace bridged to machines A and
// B, an image store and a Provider.
type lab struct {
	t       *testing.T
	s, a, b *netnstest.NS
	images  *image.Store
	g       *nfs.Ganesha
	p       *Provider
	dir     string
}

func newLab(t *testing.T) *lab {
	requireTools(t)
	l := &lab{t: t, s: netnstest.New(t, "srrn-s"), a: netnstest.New(t, "srrn-a"), b: netnstest.New(t, "srrn-b"), dir: t.TempDir()}
	if err := l.s.AddBridge("br0", netip.MustParsePrefix(serverAddr+"/24")); err != nil {
		t.Fatal(err)
	}
	if err := l.s.AddVeth("va", "br0", l.a, "eth0", netip.MustParsePrefix(addrA+"/24")); err != nil {
		t.Fatal(err)
	}
	if err := l.s.AddVeth("vb", "br0", l.b, "eth0", netip.MustParsePrefix(addrB+"/24")); err != nil {
		t.Fatal(err)
	}
	log := testenv.Logger(t, "test", hclog.Info)
	var err error
	if l.images, err = image.Open(image.Config{Dir: filepath.Join(l.dir, "images"), Logger: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // bases are immutable files
		ims, _ := l.images.List()
		for _, im := range ims {
			l.images.Remove(im.Name)
		}
		l.images.GC(nil)
	})
	l.importImage("base", "base tree\n")
	l.startGanesha()
	l.p = l.provider()
	return l
}

// startGanesha starts the lab's ganesha, with no exports.
func (l *lab) startGanesha() {
	t := l.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gdir := filepath.Join(l.dir, "ganesha")
	if err := os.MkdirAll(gdir, 0o700); err != nil {
		t.Fatal(err)
	}
	log := testenv.Logger(t, "test", hclog.Warn)
	var err error
	l.g, err = nfs.StartGanesha(ctx, nfs.GaneshaConfig{
		Dir: gdir,
		// libnfs speaks NFSv4.0 only.
		Config: nfs.Config{BindAddr: netip.MustParseAddr(serverAddr), MinorVersions: []uint8{0, 1, 2}, DbusNamePrefix: "sealroot_rootnfs", Graceless: true},
		Command: func(name string, args ...string) *exec.Cmd {
			return exec.Command("nsenter", append([]string{"--net=" + l.s.Path, "--", name}, args...)...)
		},
		Logger: log, MinBackoff: 50 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatalf("StartGanesha = %v", err)
	}
	g := l.g
	t.Cleanup(func() { g.Close() })
}

// restart stops ganesha and the provider, as a server shutdown does,
// runs between, and starts them again; it returns Restore's count.
func (l *lab) restart(between func()) int {
	l.t.Helper()
	l.g.Close()
	if err := l.p.Close(); err != nil {
		l.t.Fatalf("Close = %v", err)
	}
	if between != nil {
		between()
	}
	l.startGanesha()
	l.p = l.provider()
	n, err := l.p.Restore(context.Background())
	if err != nil {
		l.t.Fatalf("Restore = %v", err)
	}
	return n
}

func (l *lab) provider() *Provider {
	p, err := New(Config{Dir: filepath.Join(l.dir, "roots"), Images: l.images, Exporter: l.g, ServerAddr: netip.MustParseAddr(serverAddr),
		Logger: testenv.Logger(l.t, "test", hclog.Info)})
	if err != nil {
		l.t.Fatal(err)
	}
	// Unmount before t.TempDir's removal (cleanups run last in, first out).
	l.t.Cleanup(func() { p.Close() })
	return p
}

// importImage imports a tree with one file, os-release, as name.
func (l *lab) importImage(name, osRelease string) *image.Image {
	src := filepath.Join(l.t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "os-release"), []byte(osRelease), 0o644); err != nil {
		l.t.Fatal(err)
	}
	im, err := l.images.Import(context.Background(), name, src, nil)
	if err != nil {
		l.t.Fatalf("Import = %v", err)
	}
	return im
}

func machine(id, kind string) *store.Machine {
	return &store.Machine{ID: id, Root: wire.RootPlan{Kind: kind, Params: map[string]string{wire.ImageParam: "base"}}}
}

// request is the root request of machine m's release.
func request(m *store.Machine, tunnel *wire.TunnelPlan) roots.Request {
	return roots.Request{MachineID: m.ID, Plan: m.Root, RemoteAddr: m.LastAddress, Tunnel: tunnel}
}

func tunnelOf(addr string) *wire.TunnelPlan {
	return &wire.TunnelPlan{Address: addr + "/32", ServerAddr: serverAddr}
}

func (l *lab) prepare(id, kind, addr string) (wire.RootPlan, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan, _, err := l.p.Prepare(ctx, request(machine(id, kind), tunnelOf(addr)))
	return plan, err
}

// nfsTool runs a libnfs tool in ns against path on the server.
func nfsTool(ns *netnstest.NS, tool, path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, tool, append(args, "nfs://"+serverAddr+path+"?version=4")...).CombinedOutput()
	return string(out), err
}

func (l *lab) read(ns *netnstest.NS, id, file string) (string, error) {
	return nfsTool(ns, "nfs-cat", "/"+ExportName(id)+file)
}

func (l *lab) write(ns *netnstest.NS, id, file, content string) error {
	src := filepath.Join(l.t.TempDir(), "w")
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		return err
	}
	out, err := nfsTool(ns, "nfs-cp", "/"+ExportName(id)+file, src)
	if err != nil {
		return errors.New(strings.TrimSpace(out))
	}
	return nil
}

func (l *lab) mustRead(t *testing.T, ns *netnstest.NS, id, file, want string) {
	t.Helper()
	if got, err := l.read(ns, id, file); err != nil || got != want {
		t.Fatalf("read %s from %.4s's root = %q, %v; want %q", file, id, got, err, want)
	}
}

func TestNFSRoots(t *testing.T) {
	l := newLab(t)
	planA, err := l.prepare(idA, wire.RootNFS, addrA)
	if err != nil {
		t.Fatalf("Prepare A = %v", err)
	}
	if planA.Params[wire.NFSServer] != serverAddr || planA.Params[wire.NFSPath] != "/"+ExportName(idA) || planA.Params[wire.NFSVersion] != Version {
		t.Fatalf("plan = %+v", planA)
	}
	if _, err := l.prepare(idB, wire.RootNFS, addrB); err != nil {
		t.Fatalf("Prepare B = %v", err)
	}
	l.mustRead(t, l.a, idA, "/etc/os-release", "base tree\n")
	if ex := l.p.Exports(); len(ex) != 2 || ex[idA].Client.String() != addrA || ex[idB].Client.String() != addrB || ex[idA].Name != ExportName(idA) {
		t.Errorf("Exports() = %+v, want A's and B's, each to its own address", ex)
	}
	if err := l.write(l.a, idA, "/mine", "A's change\n"); err != nil {
		t.Fatalf("A writes its root: %v", err)
	}
	l.mustRead(t, l.a, idA, "/mine", "A's change\n")
	if b, err := os.ReadFile(filepath.Join(l.dir, "roots", idA, "upper", "mine")); err != nil || string(b) != "A's change\n" {
		t.Fatalf("A's write not in its upper: %q, %v", b, err)
	}

	t.Run("isolation", func(t *testing.T) {
		if out, err := l.read(l.b, idA, "/etc/os-release"); err == nil || !strings.Contains(out, "NFS4ERR_NOENT") {
			t.Fatalf("B read A's root: %q, %v; want NFS4ERR_NOENT", out, err)
		}
		if err := l.write(l.b, idA, "/evil", "x"); err == nil {
			t.Fatal("B wrote into A's root")
		}
		out, err := nfsTool(l.b, "nfs-ls", "/")
		if err != nil {
			t.Fatalf("B lists the pseudo root: %v: %s", err, out)
		}
		if strings.Contains(out, ExportName(idA)) || !strings.Contains(out, ExportName(idB)) {
			t.Fatalf("B's pseudo root:\n%s\nwant B's export and not A's", out)
		}
		if _, err := l.read(l.b, idB, "/mine"); err == nil {
			t.Fatal("A's change visible on B's root")
		}
	})

	t.Run("volatile_is_read_only", func(t *testing.T) {
		plan, err := l.prepare(idB, wire.RootVolatile, addrB)
		if err != nil {
			t.Fatalf("Prepare volatile = %v", err)
		}
		if plan.Kind != wire.RootVolatile || plan.Params[wire.VolatileVia] != wire.RootNFS {
			t.Fatalf("plan = %+v", plan)
		}
		l.mustRead(t, l.b, idB, "/etc/os-release", "base tree\n")
		if err := l.write(l.b, idB, "/x", "x"); err == nil || !strings.Contains(err.Error(), "ROFS") {
			t.Fatalf("write to a volatile base = %v; want NFS4ERR_ROFS", err)
		}
	})

	t.Run("restore_after_restart", func(t *testing.T) {
		if n := l.restart(nil); n != 2 {
			t.Fatalf("Restore = %d roots; want 2", n)
		}
		l.mustRead(t, l.a, idA, "/mine", "A's change\n")
		l.mustRead(t, l.b, idB, "/etc/os-release", "base tree\n")
	})

	t.Run("snapshot_rollback", func(t *testing.T) {
		ctx := context.Background()
		// Copy up a base file (through the overlay, as ganesha writes),
		// so the snapshot holds an indexed upper.
		rootA := filepath.Join(l.dir, "roots", idA, "root")
		if err := os.WriteFile(filepath.Join(rootA, "etc/os-release"), []byte("changed once\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := l.p.Snapshot(ctx, idA, "s1"); err != nil {
			t.Fatalf("Snapshot = %v", err)
		}
		if err := l.p.Snapshot(ctx, idA, "s1"); !errors.Is(err, ErrExists) {
			t.Fatalf("second Snapshot s1 = %v; want ErrExists", err)
		}
		if err := l.p.Snapshot(ctx, idA, "../x"); !errors.Is(err, ErrBadName) {
			t.Fatalf("Snapshot ../x = %v; want ErrBadName", err)
		}
		if _, err := l.read(l.a, idA, "/mine"); err == nil {
			t.Fatal("root still exported after Snapshot withdrew it")
		}
		if _, err := l.prepare(idA, wire.RootNFS, addrA); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootA, "etc/os-release"), []byte("changed twice\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		l.mustRead(t, l.a, idA, "/etc/os-release", "changed twice\n")
		if err := l.p.Rollback(ctx, idA, "s1"); err != nil {
			t.Fatalf("Rollback = %v", err)
		}
		if _, err := l.prepare(idA, wire.RootNFS, addrA); err != nil {
			t.Fatalf("Prepare after Rollback = %v", err)
		}
		l.mustRead(t, l.a, idA, "/etc/os-release", "changed once\n")
		l.mustRead(t, l.a, idA, "/mine", "A's change\n")
		checkHandles(t, filepath.Join(l.dir, "roots", idA, "root"), "etc/os-release", "changed once\n")
		if err := l.p.Rollback(ctx, idA, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Rollback to a missing snapshot = %v; want ErrNotFound", err)
		}
		if _, err := l.prepare(idA, wire.RootNFS, addrA); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("new_version_needs_upgrade", func(t *testing.T) {
		v2 := l.importImage("base", "new base\n")
		// A new version of the image leaves the root on its base.
		if _, err := l.prepare(idA, wire.RootNFS, addrA); err != nil {
			t.Fatalf("Prepare after a new version = %v; want the root kept on its base", err)
		}
		l.mustRead(t, l.a, idA, "/mine", "A's change\n")
		if err := l.p.Upgrade(context.Background(), idA, v2.Digest, "before-base-v1"); err != nil {
			t.Fatalf("Upgrade = %v", err)
		}
		if _, err := l.prepare(idA, wire.RootNFS, addrA); err != nil {
			t.Fatalf("Prepare after Upgrade = %v", err)
		}
		l.mustRead(t, l.a, idA, "/etc/os-release", "new base\n")
		if _, err := l.read(l.a, idA, "/mine"); err == nil {
			t.Fatal("A's change survived the upgrade")
		}
		info, err := l.p.SnapshotInfo(idA)
		if err != nil || !slices.ContainsFunc(info, func(s roots.Snapshot) bool { return s.Name == "before-base-v1" && s.Base != v2.Digest }) {
			t.Fatalf("SnapshotInfo after Upgrade = %+v, %v; want before-base-v1 on the old base", info, err)
		}
		// A volatile machine simply gets the new base.
		if _, err := l.prepare(idB, wire.RootVolatile, addrB); err != nil {
			t.Fatal(err)
		}
		l.mustRead(t, l.b, idB, "/etc/os-release", "new base\n")
	})

	t.Run("base_changed_on_disk_refused", func(t *testing.T) {
		im, err := l.images.Get("base")
		if err != nil {
			t.Fatal(err)
		}
		tree, err := l.images.TreePath(im.Digest)
		if err != nil {
			t.Fatal(err)
		}
		// The same content at the same path, but other inodes, while the
		// server was down: an upper tied to the old tree must not be
		// mounted over it.
		n := l.restart(func() {
			if err := os.Rename(tree, tree+".old"); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("cp", "-a", tree+".old", tree).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
		})
		if n != 1 {
			t.Fatalf("Restore = %d roots; want 1 (B's volatile root, not A's)", n)
		}
		_, err = l.prepare(idA, wire.RootNFS, addrA)
		if !errors.Is(err, nfs.ErrBaseChanged) {
			t.Fatalf("Prepare over a replaced base tree = %v; want nfs.ErrBaseChanged", err)
		}
		if _, err := l.read(l.a, idA, "/etc/os-release"); err == nil {
			t.Fatal("root served over a replaced base")
		}
		// B's volatile root holds the replacement tree; restart to free it.
		l.restart(func() {
			os.RemoveAll(tree)
			if err := os.Rename(tree+".old", tree); err != nil {
				t.Fatal(err)
			}
		})
		if _, err := l.prepare(idA, wire.RootNFS, addrA); err != nil {
			t.Fatalf("Prepare with the base back = %v", err)
		}
	})

	t.Run("held_upper_refused_until_free", func(t *testing.T) {
		// A file of A's root held open, as ganesha holds files of a
		// withdrawn export until their leases expire.
		f, err := os.Open(filepath.Join(l.dir, "roots", idA, "root", "etc", "os-release"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.prepare(idA, wire.RootVolatile, addrA); err != nil {
			t.Fatalf("Prepare volatile = %v", err)
		}
		_, err = l.prepare(idA, wire.RootNFS, addrA)
		if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "retry shortly") {
			t.Fatalf("Prepare over a held upper = %v; want EBUSY with a retry hint", err)
		}
		f.Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err = l.prepare(idA, wire.RootNFS, addrA); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("Prepare once the upper is free = %v", err)
		}
		if got, err := l.read(l.a, idA, "/etc/os-release"); err != nil || got != "new base\n" {
			t.Fatalf("read after remount = %q, %v", got, err)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		ctx := context.Background()
		if _, _, err := l.p.Prepare(ctx, request(machine(idA, wire.RootNFS), nil)); !errors.Is(err, ErrNeedsTunnel) {
			t.Errorf("Prepare without a tunnel = %v; want ErrNeedsTunnel", err)
		}
		m := machine(idA, wire.RootNFS)
		m.Root.Params = nil
		if _, _, err := l.p.Prepare(ctx, request(m, tunnelOf(addrA))); !errors.Is(err, ErrNoImage) {
			t.Errorf("Prepare without an image = %v; want ErrNoImage", err)
		}
		if _, _, err := l.p.Prepare(ctx, request(machine("../../etc", wire.RootNFS), tunnelOf(addrA))); !errors.Is(err, ErrBadName) {
			t.Errorf("Prepare with a bad machine ID = %v; want ErrBadName", err)
		}
		if err := l.p.Reset(ctx, "cccc000000000000", wire.RootPlan{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Reset of a machine without a root = %v; want ErrNotFound", err)
		}
	})

	t.Run("other_kind_withdraws", func(t *testing.T) {
		ctx := context.Background()
		rs := roots.New(roots.Config{Providers: map[string]roots.Provider{roots.KindNFS: l.p, roots.KindVolatileNFS: l.p}})
		plan, _, err := rs.Prepare(ctx, request(machine(idB, wire.RootNone), tunnelOf(addrB)))
		if err != nil || plan.Kind != wire.RootNone {
			t.Fatalf("Prepare kind none = %+v, %v", plan, err)
		}
		if _, err := l.read(l.b, idB, "/etc/os-release"); err == nil {
			t.Fatal("B's export still served after it switched to another root kind")
		}
		if !l.p.InUse(mustDigest(t, l.images, "base")) {
			t.Error("InUse(base of A's root) = false")
		}
		if err := l.p.Delete(ctx, idA); err != nil {
			t.Fatalf("Delete = %v", err)
		}
		if l.p.Has(idA) {
			t.Error("Has(A) after Delete")
		}
	})
}

func mustDigest(t *testing.T, s *image.Store, name string) string {
	im, err := s.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return im.Digest
}

// checkHandles opens file by the handle the overlay gives it, as ganesha
// does for every NFS operation, and checks its content: after a rollback
// the handle must lead to the rolled-back upper, not to the base.
func checkHandles(t *testing.T, root, file, want string) {
	t.Helper()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, filepath.Join(root, file), 0)
	if err != nil {
		t.Fatalf("name_to_handle_at: %v", err)
	}
	mnt, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer mnt.Close()
	fd, err := unix.OpenByHandleAt(int(mnt.Fd()), h, unix.O_RDONLY)
	if err != nil {
		t.Fatalf("open_by_handle_at: %v", err)
	}
	f := os.NewFile(uintptr(fd), file)
	defer f.Close()
	b := make([]byte, 128)
	n, _ := f.Read(b)
	if string(b[:n]) != want {
		t.Fatalf("%s by handle = %q; want %q", file, b[:n], want)
	}
}
