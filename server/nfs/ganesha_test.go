package nfs

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/test/testenv"
)

// requireTools skips t unless it runs as root with ganesha and libnfs's
// tools installed; under CI=true it fails instead.
func requireTools(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t)
	testenv.RequireTools(t, "ganesha.nfsd", "nfs-cat", "nfs-ls", "nsenter")
}

const (
	serverAddr = "10.231.0.1"
	addrA      = "10.231.0.2"
	addrB      = "10.231.0.3"
)

// testNet is a server namespace bridged to machines A and B.
type testNet struct{ s, a, b *netnstest.NS }

func newTestNet(t *testing.T) testNet {
	n := testNet{s: netnstest.New(t, "srnfs-s"), a: netnstest.New(t, "srnfs-a"), b: netnstest.New(t, "srnfs-b")}
	if err := n.s.AddBridge("br0", netip.MustParsePrefix(serverAddr+"/24")); err != nil {
		t.Fatal(err)
	}
	if err := n.s.AddVeth("va", "br0", n.a, "eth0", netip.MustParsePrefix(addrA+"/24")); err != nil {
		t.Fatal(err)
	}
	if err := n.s.AddVeth("vb", "br0", n.b, "eth0", netip.MustParsePrefix(addrB+"/24")); err != nil {
		t.Fatal(err)
	}
	return n
}

// nfs runs a libnfs tool (NFSv4.0) in ns against the server's path.
func nfsTool(ns *netnstest.NS, tool, path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, tool, "nfs://"+serverAddr+path+"?version=4").CombinedOutput()
	return string(out), err
}

// machineRoot mounts an overlay of base for machine name under dir.
func machineRoot(t *testing.T, dir, base, name string) string {
	t.Helper()
	upper, work, root := filepath.Join(dir, name, "upper"), filepath.Join(dir, name, "work"), filepath.Join(dir, name, "root")
	for _, d := range []string{upper, work, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := mountForTest(t, base, upper, work, root); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestGanesha(t *testing.T) {
	requireTools(t)
	n := newTestNet(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "os-release"), []byte("base tree\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := StartGanesha(ctx, GaneshaConfig{
		Dir:    dir,
		Config: Config{BindAddr: netip.MustParseAddr(serverAddr), MinorVersions: []uint8{0, 1, 2}, DbusNamePrefix: "sealroot_test", Graceless: true},
		Command: func(name string, args ...string) *exec.Cmd {
			return exec.Command("nsenter", append([]string{"--net=" + n.s.Path, "--", name}, args...)...)
		},
		Logger: testenv.Logger(t, "nfs", hclog.Info), MinBackoff: 50 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatalf("StartGanesha = %v", err)
	}
	t.Cleanup(func() { g.Close() })

	// Mounted after ganesha started: it must still see them.
	rootA, rootB := machineRoot(t, dir, base, "a"), machineRoot(t, dir, base, "b")
	if err := os.WriteFile(filepath.Join(rootA, "mine"), []byte("written on A's root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exports := []Export{
		{ID: 1, Path: rootA, Name: "ma", Client: netip.MustParseAddr(addrA)},
		{ID: 2, Path: rootB, Name: "mb", Client: netip.MustParseAddr(addrB)},
	}
	if err := g.SetExports(ctx, exports); err != nil {
		t.Fatalf("SetExports = %v", err)
	}
	checkServed(t, n)

	t.Run("restarted_after_kill", func(t *testing.T) {
		g.mu.Lock()
		old := g.proc
		g.mu.Unlock()
		if err := old.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		before := g.Restarts()
		waitRestarted(t, g, old)
		checkServed(t, n)
		if got := g.Restarts(); got <= before || !g.Running() {
			t.Errorf("after a kill: Restarts() = %d (was %d), Running() = %v; want counted and running", got, before, g.Running())
		}
	})
	t.Run("root_write_not_squashed", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "small")
		if err := os.WriteFile(src, []byte("from A as root\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if out, err := n.a.Command(ctx, "nfs-cp", src, "nfs://"+serverAddr+"/ma/fromA?version=4").CombinedOutput(); err != nil {
			t.Fatalf("nfs-cp = %v: %s", err, out)
		}
		fi, err := os.Stat(filepath.Join(dir, "a", "upper", "fromA"))
		if err != nil {
			t.Fatalf("write through NFS not in A's upper: %v", err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 0 {
			t.Errorf("file written by A's root has uid %d; want 0 (no root squash)", uid)
		}
	})
	t.Run("set_while_restarting", func(t *testing.T) {
		g.mu.Lock()
		old := g.proc
		g.mu.Unlock()
		if err := old.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Whether the new daemon reads these at start or by a reload,
		// SetExports returns once they are served.
		if err := g.SetExports(ctx, exports); err != nil {
			t.Fatalf("SetExports = %v", err)
		}
		checkServed(t, n)
	})
	t.Run("export_removed", func(t *testing.T) {
		if err := g.SetExports(ctx, exports[1:]); err != nil {
			t.Fatalf("SetExports = %v", err)
		}
		if out, err := nfsTool(n.a, "nfs-cat", "/ma/os-release"); err == nil || !strings.Contains(out, "NFS4ERR_NOENT") {
			t.Fatalf("A read its removed export: %q, %v; want NFS4ERR_NOENT", out, err)
		}
		if out, err := nfsTool(n.b, "nfs-cat", "/mb/os-release"); err != nil || out != "base tree\n" {
			t.Fatalf("B's export after removing A's = %q, %v", out, err)
		}
	})
	t.Run("writes_during_a_reload_share_the_next", func(t *testing.T) {
		// A boot storm: many machines' exports written while ganesha is
		// busy. Stopped, it cannot finish the first write's reload before
		// the others are written; they must cost one more reload, not one
		// each (with one reload per write, 200 exports took 7 s and 1,000
		// took 7 minutes).
		g.mu.Lock()
		proc := g.proc
		g.mu.Unlock()
		if err := proc.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		before := g.Reloads()
		var waits []func(context.Context) error
		for i := range 20 {
			set := exports[i%2:] // the last write serves both again
			if i == 19 {
				set = exports
			}
			wait, err := g.WriteExports(set)
			if err != nil {
				proc.Signal(syscall.SIGCONT)
				t.Fatalf("WriteExports = %v", err)
			}
			waits = append(waits, wait)
		}
		if err := proc.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		for _, wait := range waits {
			if err := wait(ctx); err != nil {
				t.Fatalf("wait = %v", err)
			}
		}
		if got := g.Reloads() - before; got != 2 {
			t.Errorf("20 exports written during one reload made %d reloads; want 2 (that one and one for all the others)", got)
		}
		checkServed(t, n)
	})
	t.Run("close_stops_daemon", func(t *testing.T) {
		g.mu.Lock()
		p := g.proc
		g.mu.Unlock()
		g.Close()
		if err := p.Signal(syscall.Signal(0)); err == nil {
			t.Fatalf("ganesha pid %d still running after Close", p.Pid)
		}
		if err := g.SetExports(ctx, exports); err == nil {
			t.Fatal("SetExports after Close succeeded")
		}
	})
}

// checkServed checks that A and B each read their own root and nothing of
// the other's, not even its name.
func checkServed(t *testing.T, n testNet) {
	t.Helper()
	for _, tc := range []struct {
		name, path, want string
		ns               *netnstest.NS
	}{
		{"a_reads_base", "/ma/os-release", "base tree\n", n.a},
		{"a_reads_its_write", "/ma/mine", "written on A's root\n", n.a},
		{"b_reads_base", "/mb/os-release", "base tree\n", n.b},
	} {
		if out, err := nfsTool(tc.ns, "nfs-cat", tc.path); err != nil || out != tc.want {
			t.Errorf("%s: nfs-cat %s = %q, %v; want %q", tc.name, tc.path, out, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name, path string
		ns         *netnstest.NS
	}{
		{"b_denied_a_base", "/ma/os-release", n.b},
		{"b_denied_a_write", "/ma/mine", n.b},
		{"a_denied_b", "/mb/os-release", n.a},
	} {
		out, err := nfsTool(tc.ns, "nfs-cat", tc.path)
		if err == nil || !strings.Contains(out, "NFS4ERR_NOENT") {
			t.Errorf("%s: nfs-cat %s = %q, %v; want NFS4ERR_NOENT", tc.name, tc.path, out, err)
		}
	}
	lsA, errA := nfsTool(n.a, "nfs-ls", "/")
	lsB, errB := nfsTool(n.b, "nfs-ls", "/")
	if errA != nil || errB != nil || !strings.Contains(lsA, " ma\n") || !strings.Contains(lsB, " mb\n") ||
		strings.Contains(lsA, " mb\n") || strings.Contains(lsB, " ma\n") {
		t.Errorf("pseudo roots: A sees %q (%v), B sees %q (%v); want each only its own", lsA, errA, lsB, errB)
	}
}

func waitRestarted(t *testing.T, g *Ganesha, old *os.Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		g.mu.Lock()
		p, ready, ch := g.proc, g.ready, g.changed
		g.mu.Unlock()
		if p != nil && p != old && ready {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("ganesha not restarted within 30s")
		}
	}
}

func TestStartGaneshaFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	g, err := StartGanesha(ctx, GaneshaConfig{Dir: t.TempDir(), Binary: "/nonexistent/ganesha.nfsd", MinBackoff: 10 * time.Millisecond}, nil)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("StartGanesha(missing binary) = %v, %v; want DeadlineExceeded", g, err)
	}
	if _, err := StartGanesha(ctx, GaneshaConfig{Dir: "relative"}, nil); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("StartGanesha(relative Dir) = %v; want ErrBadConfig", err)
	}
	bad := []Export{{ID: 1, Path: "/x", Name: "a;b", Client: netip.MustParseAddr("10.0.0.2")}}
	if _, err := StartGanesha(ctx, GaneshaConfig{Dir: t.TempDir()}, bad); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("StartGanesha(bad export) = %v; want ErrBadConfig", err)
	}
}
