package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	agenttunnel "github.com/sealroot/sealroot/agent/tunnel"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// The lab: namespace S (server) with bridge br0 = 192.168.77.1/24, and
// machines A, B, C, D on veths into the bridge (.2 to .5).
var (
	lanServer = netip.MustParsePrefix("192.168.77.1/24")
	prefix    = netip.MustParsePrefix("10.200.0.0/24")
)

const (
	wgPort      = 51820
	storagePort = 3260
)

type lab struct {
	s   *netnstest.NS
	m   map[string]*netnstest.NS
	cfg Config
	tun *Tunnel
}

func newLab(t testing.TB, useTUN bool) *lab {
	t.Helper()
	return newLabWith(t, Config{UseTUN: useTUN, Userspace: true})
}

// newLabWith is newLab with base's StatePath, PrivateKeyPath, UseTUN and
// Userspace. A UseTUN lab without Userspace needs kernel WireGuard: where
// the kernel has none, it is unavailable (skipped; a failure under CI).
func newLabWith(t testing.TB, base Config) *lab {
	t.Helper()
	l := &lab{s: netnstest.New(t, "srtun-s"), m: map[string]*netnstest.NS{}}
	if err := l.s.AddBridge("br0", lanServer); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b", "c", "d"} {
		ns := netnstest.New(t, "srtun-"+name)
		addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, 77, byte(2 + i)}), 24)
		if err := l.s.AddVeth("v"+name, "br0", ns, "eth0", addr); err != nil {
			t.Fatal(err)
		}
		l.m[name] = ns
	}
	l.cfg = Config{Prefix: prefix, ListenPort: wgPort, Endpoint: "192.168.77.1:51820", UseTUN: base.UseTUN,
		Userspace: base.Userspace, StatePath: base.StatePath, PrivateKeyPath: base.PrivateKeyPath, Logger: testenv.Logger(t, "", hclog.Debug)}
	l.start(t)
	return l
}

// start creates the lab's server tunnel in S; it is closed at cleanup.
func (l *lab) start(t testing.TB) {
	t.Helper()
	err := l.s.Do(func() (err error) {
		l.tun, err = New(l.cfg)
		return err
	})
	if err != nil {
		t.Fatalf("tunnel.New: %v", err)
	}
	tn := l.tun
	t.Cleanup(func() { tn.Close() })
	if l.cfg.UseTUN && !l.cfg.Userspace && tn.Engine() != "kernel" {
		// Hosts without the module are expected (CI's is one): the kernel
		// path is proven inside a guest by vm-tests TestTunnelKernelInGuest.
		t.Skipf("kernel WireGuard: the kernel has no wireguard module (tunnel fell back to %s); run in a guest by TestTunnelKernelInGuest", tn.Engine())
	}
}

// client is a machine's end: wireguard-go on a TUN in the machine's
// namespace, standing in for kernel WireGuard (the host has no module),
// configured through its UAPI socket by agent/tunnel, as the agent does.
type client struct {
	ns   *netnstest.NS
	name string
	priv wgtypes.Key
	dev  *device.Device
}

func newClient(t testing.TB, ns *netnstest.NS, name string) *client {
	t.Helper()
	priv, err := agenttunnel.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{ns: ns, name: name, priv: priv}
	err = ns.Do(func() error {
		td, err := tun.CreateTUN(name, DefaultMTU)
		if err != nil {
			return err
		}
		c.dev = device.NewDevice(pinTUN(td), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
		return c.dev.Up()
	})
	if err != nil {
		t.Fatalf("client %s: %v", name, err)
	}
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		t.Fatalf("UAPIOpen: %v", err)
	}
	ln, err := ipc.UAPIListen(name, f)
	if err != nil {
		t.Fatalf("UAPIListen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go c.dev.IpcHandle(conn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		c.dev.Close()
	})
	return c
}

// configure applies plan the way the agent does, after Link creation.
func (c *client) configure(t testing.TB, plan *wire.TunnelPlan) {
	t.Helper()
	s, err := agenttunnel.Compute(plan, c.priv)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	if err := c.ns.Do(func() error { return agenttunnel.Configure(context.Background(), c.name, s) }); err != nil {
		t.Fatalf("Configure: %v", err)
	}
}

func (c *client) pub() []byte { k := c.priv.PublicKey(); return k[:] }

// dial opens a TCP connection from the client's namespace (from local, if
// valid) within timeout.
func dial(ns *netnstest.NS, local netip.Addr, to netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: timeout}
		if local.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		c, err = d.Dial("tcp4", to.String())
		return err
	})
	return c, err
}

// storage is a TCP echo service on the tunnel that serves only the
// machine allowed, judged by the tunnel source address.
type storage struct {
	mu      sync.Mutex
	refused []string // machine IDs (or "?") refused
	closed  chan string
}

func serveStorage(t *testing.T, l *lab, allowed string) *storage {
	t.Helper()
	var ln net.Listener
	err := l.s.Do(func() (err error) { // TUN mode: the socket lives in S
		ln, err = l.tun.Listen("tcp", storagePort)
		return err
	})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	st := &storage{closed: make(chan string, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				st.handle(l.tun, c, allowed)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return st
}

func (st *storage) handle(tn *Tunnel, c net.Conn, allowed string) {
	defer c.Close()
	id, ok := tn.PeerAddr(c.RemoteAddr())
	if !ok || id != allowed {
		st.mu.Lock()
		st.refused = append(st.refused, id)
		st.mu.Unlock()
		return
	}
	io.Copy(c, c)
	st.closed <- id
}

func (st *storage) refusals() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]string(nil), st.refused...)
}

// echo writes msg and reads it back within timeout.
func echo(c net.Conn, msg string, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch")
	}
	return nil
}
