package tunnel

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
)

const (
	okTimeout   = 5 * time.Second
	failTimeout = 2 * time.Second // a dial that must not succeed
)

func TestTunnel(t *testing.T) {
	for _, mode := range labModes {
		t.Run(mode.name, func(t *testing.T) { testTunnel(t, mode.cfg) })
	}
}

// labModes are the server ends a lab can run: netstack, wireguard-go on
// a TUN, and kernel WireGuard (where the kernel has it: in the QEMU guest's
// Debian kernel, not on a host without the module).
var labModes = []struct {
	name string
	cfg  Config
}{
	{"netstack", Config{}},
	{"tun", Config{UseTUN: true, Userspace: true}},
	{"kernel", Config{UseTUN: true}},
}

// testTunnel runs the link-security properties in order on one lab; the
// revocation comes last.
func testTunnel(t *testing.T, mode Config) {
	l := newLabWith(t, mode)
	ctx := context.Background()
	a := newClient(t, l.m["a"], "srtwg-a")
	b := newClient(t, l.m["b"], "srtwg-b")
	planA, err := l.tun.Add(ctx, "machine-a", a.pub())
	if err != nil {
		t.Fatalf("Add(a): %v", err)
	}
	planB, err := l.tun.Add(ctx, "machine-b", b.pub())
	if err != nil {
		t.Fatalf("Add(b): %v", err)
	}
	a.configure(t, planA)
	b.configure(t, planB)
	st := serveStorage(t, l, "machine-a")
	target := netip.AddrPortFrom(l.tun.ServerAddr(), storagePort)
	addrA := netip.MustParsePrefix(planA.Address).Addr()

	var connA net.Conn
	outer := t // connections outlive the subtest that opens them
	t.Run("machine_reaches_its_storage", func(t *testing.T) {
		connA, err = dial(l.m["a"], netip.Addr{}, target, okTimeout)
		if err != nil {
			t.Fatalf("dial storage from A: %v", err)
		}
		c := connA
		outer.Cleanup(func() { c.Close() })
		if err := echo(connA, "block 0", okTimeout); err != nil {
			t.Fatalf("echo from A: %v", err)
		}
		if ps, ok, _ := l.tun.Status("machine-a"); !ok || ps.LastHandshake.IsZero() {
			t.Errorf("Status(a) = %+v, %v; want a handshake", ps, ok)
		}
	})

	t.Run("other_machine_refused_by_source", func(t *testing.T) {
		c, err := dial(l.m["b"], netip.Addr{}, target, okTimeout)
		if err != nil {
			t.Fatalf("dial from B: %v (B's tunnel itself must work)", err)
		}
		defer c.Close()
		if err := echo(c, "steal", okTimeout); err == nil {
			t.Fatal("B got A's storage")
		}
		if got := st.refusals(); !slices.Contains(got, "machine-b") {
			t.Fatalf("refusals = %q, want machine-b identified by its tunnel address", got)
		}
	})

	t.Run("spoofed_source_dropped", func(t *testing.T) {
		// B puts A's tunnel address on its link and sends from it: the
		// server's cryptokey routing drops what B's key may not send.
		err := l.m["b"].Do(func() error {
			link, err := netlink.LinkByName("srtwg-b")
			if err != nil {
				return err
			}
			return netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: addrA.AsSlice(), Mask: net.CIDRMask(32, 32)}})
		})
		if err != nil {
			t.Fatalf("add A's address to B: %v", err)
		}
		before := len(st.refusals())
		c, err := dial(l.m["b"], addrA, target, failTimeout)
		if err == nil {
			c.Close()
			t.Fatal("B connected with A's tunnel address as source")
		}
		if n := len(st.refusals()); n != before {
			t.Errorf("the spoofed connection reached the service")
		}
	})

	t.Run("storage_unreachable_on_lan", func(t *testing.T) {
		lanTarget := netip.AddrPortFrom(lanServer.Addr(), storagePort)
		if c, err := dial(l.m["d"], netip.Addr{}, lanTarget, failTimeout); err == nil {
			c.Close()
			t.Fatalf("storage reachable on the LAN address %v", lanTarget)
		}
		// A LAN host routes the tunnel address to the server directly,
		// bypassing WireGuard.
		err := l.m["d"].Do(func() error {
			_, dst, _ := net.ParseCIDR(prefix.String())
			return netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: lanServer.Addr().AsSlice()})
		})
		if err != nil {
			t.Fatalf("route: %v", err)
		}
		if c, err := dial(l.m["d"], netip.Addr{}, target, failTimeout); err == nil {
			c.Close()
			t.Fatalf("storage reachable from the LAN at its tunnel address %v", target)
		}
	})

	t.Run("wrong_key_gets_no_handshake", func(t *testing.T) {
		c := newClient(t, l.m["c"], "srtwg-c")
		c.configure(t, planA) // claims A's address with an unknown key
		if conn, err := dial(l.m["c"], netip.Addr{}, target, failTimeout); err == nil {
			conn.Close()
			t.Fatal("a client with an unknown key reached storage")
		}
		if l.tun.hasDevicePeer(c.pub()) {
			t.Fatal("unknown key is a peer")
		}
	})

	t.Run("stale_key_gets_no_handshake", func(t *testing.T) {
		old := a.pub()
		// A reboots: fresh key pair, new attestation, new Add.
		priv, err := newKey()
		if err != nil {
			t.Fatal(err)
		}
		fresh := priv.PublicKey()
		if _, err := l.tun.Add(ctx, "machine-a", fresh[:]); err != nil {
			t.Fatalf("Add(a, fresh): %v", err)
		}
		if l.tun.hasDevicePeer(old) {
			t.Fatal("the old key of A is still a peer")
		}
		select {
		case <-st.closed: // Add closed the old boot's session
		case <-time.After(30 * time.Second):
			t.Fatal("the old session survived the new key")
		}
		if conn, err := dial(l.m["a"], netip.Addr{}, target, failTimeout); err == nil {
			conn.Close()
			t.Fatal("the stale key reached storage")
		}
		// The rebooted agent uses its new key and gets through again.
		a.priv = priv
		a.configure(t, planA)
		connA, err = dial(l.m["a"], netip.Addr{}, target, okTimeout)
		if err != nil {
			t.Fatalf("dial with the fresh key: %v", err)
		}
		c := connA
		outer.Cleanup(func() { c.Close() })
		if err := echo(connA, "block 1", okTimeout); err != nil {
			t.Fatalf("echo with the fresh key: %v", err)
		}
	})

	t.Run("revocation_stops_io", func(t *testing.T) {
		start := time.Now()
		if err := l.tun.Remove("machine-a"); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		select {
		case <-st.closed:
		case <-time.After(30 * time.Second):
			t.Fatal("server session of the revoked machine still open")
		}
		var ioErr error
		for time.Since(start) < 30*time.Second && ioErr == nil {
			ioErr = echo(connA, "after revoke", 2*time.Second)
		}
		if ioErr == nil {
			t.Fatal("I/O still works 30 s after revocation")
		}
		t.Logf("I/O stopped %v after revocation (%v)", time.Since(start).Round(time.Millisecond), ioErr)
		if _, ok := l.tun.PeerAddr(&net.TCPAddr{IP: addrA.AsSlice(), Port: 1}); ok {
			t.Error("PeerAddr still names the revoked machine")
		}
		if conn, err := dial(l.m["a"], netip.Addr{}, target, failTimeout); err == nil {
			conn.Close()
			t.Fatal("revoked machine reconnected")
		}
	})
}

func TestAddRefusesBadKeys(t *testing.T) {
	tn, err := New(Config{Prefix: prefix, Endpoint: "192.0.2.1:51820"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer tn.Close()
	k1, _ := newKey()
	p1 := k1.PublicKey()
	if _, err := tn.Add(context.Background(), "m1", p1[:]); err != nil {
		t.Fatalf("Add: %v", err)
	}
	server := tn.PublicKey()
	tests := []struct {
		name string
		id   string
		key  []byte
		want error
	}{
		{"short_key", "m2", make([]byte, 31), ErrBadKey},
		{"server_key", "m2", server[:], ErrBadKey},
		{"key_of_another_machine", "m2", p1[:], ErrKeyInUse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tn.Add(context.Background(), tt.id, tt.key); !errors.Is(err, tt.want) {
				t.Fatalf("Add = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestRestartReachesPeersFirst restarts the server's tunnel under a
// machine that stays quiet (no keepalive, nothing to send): the new device
// must handshake with the machine by itself, at the endpoint it recorded,
// so the machine's root I/O resumes without waiting for its own rekey.
func TestRestartReachesPeersFirst(t *testing.T) {
	dir := t.TempDir()
	l := newLabWith(t, Config{StatePath: filepath.Join(dir, "tunnel.json"), PrivateKeyPath: filepath.Join(dir, "tunnel.key")})
	ctx := context.Background()
	a := newClient(t, l.m["a"], "srtwg-r")
	plan, err := l.tun.Add(ctx, "machine-a", a.pub())
	if err != nil {
		t.Fatal(err)
	}
	a.configure(t, plan)
	serverKey := hex.EncodeToString(plan.ServerKey)
	if err := a.dev.IpcSet("public_key=" + serverKey + "\npersistent_keepalive_interval=0\n"); err != nil {
		t.Fatal(err)
	}
	serveStorage(t, l, "machine-a")
	c, err := dial(l.m["a"], netip.Addr{}, netip.AddrPortFrom(l.tun.ServerAddr(), storagePort), okTimeout)
	if err != nil {
		t.Fatalf("dial storage: %v", err)
	}
	if err := echo(c, "before", okTimeout); err != nil {
		t.Fatal(err)
	}
	c.Close()
	l.tun.Close()
	state, err := os.ReadFile(l.cfg.StatePath)
	if err != nil || !strings.Contains(string(state), `"endpoint": "192.168.77.2:`) {
		t.Fatalf("state after Close = %s, %v; want machine A's endpoint recorded", state, err)
	}

	// The device logs at trace level what it sends and receives: a
	// handshake response means the server initiated the handshake (the
	// machine would only send an initiation after its rekey timeout).
	var log lockedBuffer
	l.cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Trace})
	l.start(t)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "Received handshake response") {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted server did not initiate a handshake with the quiet machine at its recorded endpoint; its log:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	serveStorage(t, l, "machine-a")
	c, err = dial(l.m["a"], netip.Addr{}, netip.AddrPortFrom(l.tun.ServerAddr(), storagePort), okTimeout)
	if err != nil {
		t.Fatalf("dial storage after the restart: %v", err)
	}
	defer c.Close()
	if err := echo(c, "after", okTimeout); err != nil {
		t.Fatalf("echo after the restart: %v", err)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Adds running at once share the state file's writes (Tunnel.commit);
// each returns only once the file holds its peer, and none is lost to a
// write of an older state.
func TestConcurrentAddsAreStoredBeforeTheyReturn(t *testing.T) {
	state := filepath.Join(t.TempDir(), "tunnel.json")
	tn, err := New(Config{Prefix: prefix, Endpoint: "192.0.2.1:51820", StatePath: state})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer tn.Close()
	const n = 64
	keys := make([][]byte, n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		k, _ := newKey()
		pub := k.PublicKey()
		keys[i] = pub[:]
		id := fmt.Sprintf("m%d", i)
		wg.Go(func() {
			if _, err := tn.Add(context.Background(), id, keys[i]); err != nil {
				errs <- fmt.Errorf("Add %s: %w", id, err)
				return
			}
			a, err := loadAllocator(state, prefix)
			if err != nil {
				errs <- err
				return
			}
			if got, ok := a.get(id); !ok || !bytes.Equal(got.Key, keys[i]) {
				errs <- fmt.Errorf("Add %s returned before the state file had its key (%v)", id, got)
			}
			if i%4 == 0 {
				if err := tn.Remove(id); err != nil {
					errs <- fmt.Errorf("Remove %s: %w", id, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	a, err := loadAllocator(state, prefix)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		got, ok := a.get(fmt.Sprintf("m%d", i))
		want := keys[i]
		if i%4 == 0 {
			want = nil
		}
		if !ok || !bytes.Equal(got.Key, want) {
			t.Errorf("state file for m%d: %+v, want key %x", i, got, want)
		}
	}
}
