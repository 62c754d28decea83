package netnstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"
)

func TestNamespace(t *testing.T) {
	a := New(t, "nntest-a")
	b := New(t, "nntest-b")
	if err := a.AddBridge("br0", netip.MustParsePrefix("10.99.0.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := a.AddTap("tap0", "br0"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddVeth("veth0", "br0", b, "eth0", netip.MustParsePrefix("10.99.0.2/24")); err != nil {
		t.Fatal(err)
	}

	t.Run("address_only_inside", func(t *testing.T) {
		if hasAddr(t, "10.99.0.1") {
			t.Fatal("10.99.0.1 is configured in the host namespace")
		}
		if err := a.Do(func() error {
			if !hasAddr(t, "10.99.0.1") {
				t.Error("10.99.0.1 missing inside the namespace")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("veth_over_bridge", func(t *testing.T) {
		var ln net.Listener
		err := a.Do(func() (err error) {
			ln, err = net.Listen("tcp", "10.99.0.1:0")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		err = b.Do(func() error {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Fatalf("dial from b over veth and bridge: %v", err)
		}
	})

	t.Run("command_runs_inside", func(t *testing.T) {
		out, err := a.Command(context.Background(), "ip", "-br", "link").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link: %v: %s", err, out)
		}
		for _, l := range []string{"br0", "tap0", "veth0"} {
			if !strings.Contains(string(out), l) {
				t.Errorf("ip link in namespace = %q, missing %s", out, l)
			}
		}
	})
}

func TestNewRemovesStale(t *testing.T) {
	RequireRoot(t)
	// A plain file where a crashed `ip netns add` left its mount point.
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(runDir+"/nntest-stale", nil, 0o444); err != nil {
		t.Fatal(err)
	}
	// And a real namespace of the same name from a run that never cleaned up.
	n := New(t, "nntest-stale")
	if err := n.AddBridge("br0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if err := create("nntest-stale2"); err != nil {
		t.Fatal(err)
	}
	if err := removeStale("nntest-stale2"); err != nil {
		t.Fatalf("removeStale(mounted namespace): %v", err)
	}
	if _, err := os.Stat(runDir + "/nntest-stale2"); !os.IsNotExist(err) {
		t.Fatalf("stale namespace still present: %v", err)
	}
}

func hasAddr(t *testing.T, ip string) bool {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if strings.HasPrefix(a.String(), ip+"/") {
			return true
		}
	}
	return false
}

// TestSurvivesIPNetnsAdd checks that a namespace made here stays reachable
// after someone else's first `ip netns add`, which binds /run/netns over
// itself when it is not a shared mount point yet.
func TestSurvivesIPNetnsAdd(t *testing.T) {
	RequireRoot(t)
	ip := testenv.LookTool(t, "ip")
	n := New(t, fmt.Sprintf("nntest-keep-%d", os.Getpid()))
	other := fmt.Sprintf("nntest-other-%d", os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", other).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command(ip, "netns", "del", other).Run()
	if out, err := exec.Command(ip, "netns", "exec", n.Name, "true").CombinedOutput(); err != nil {
		t.Fatalf("namespace %s hidden after ip netns add: %v: %s", n.Name, err, out)
	}
}
