package attest_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// homeTunnel starts a netstack tunnel of its own prefix and endpoint, its
// UDP socket in a namespace of its own.
func homeTunnel(t *testing.T, tag byte, prefix, endpoint string) (*tunnel.Tunnel, *netnstest.NS) {
	t.Helper()
	ns := netnstest.New(t, fmt.Sprintf("srhome-%c%d", tag, os.Getpid()%100000))
	var tn *tunnel.Tunnel
	err := ns.Do(func() (err error) {
		tn, err = tunnel.New(tunnel.Config{Prefix: netip.MustParsePrefix(prefix), Endpoint: endpoint, Logger: testenv.Logger(t, "", hclog.Debug)})
		return err
	})
	if err != nil {
		t.Fatalf("tunnel.New: %v", err)
	}
	t.Cleanup(func() { tn.Close() })
	return tn, ns
}

// handshake brings up a WireGuard device with the agent's private key
// inside ns and waits for its handshake with the server key at endpoint:
// what the agent's tunnel step does first.
func handshake(t *testing.T, ns *netnstest.NS, key wgtypes.Key, serverKey []byte, endpoint netip.AddrPort) error {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), nsBind{conn.NewStdNetBind(), ns}, device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=1\nallowed_ip=0.0.0.0/0\n",
		hex.EncodeToString(key[:]), hex.EncodeToString(serverKey), endpoint)
	if err := dev.IpcSet(cfg); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if err := dev.Up(); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second) // handshakes retry every 5 s
	for time.Now().Before(deadline) {
		st, err := dev.IpcGet()
		if err != nil {
			return err
		}
		if strings.Contains(st, "last_handshake_time_sec=") && !strings.Contains(st, "last_handshake_time_sec=0\n") {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _ := dev.IpcGet()
	var counts []string // not the whole state: it holds the private key
	for line := range strings.Lines(st) {
		if strings.HasPrefix(line, "tx_bytes=") || strings.HasPrefix(line, "rx_bytes=") {
			counts = append(counts, strings.TrimSpace(line))
		}
	}
	return fmt.Errorf("no handshake in 30s (%s)", strings.Join(counts, " "))
}

// nsBind opens its sockets in ns. The channel TUN's Up event brings the
// device up from wireguard-go's own goroutine too, on a thread outside ns:
// whichever comes first must not open the socket in the host's namespace,
// where the initiations never reach the server.
type nsBind struct {
	conn.Bind
	ns *netnstest.NS
}

func (b nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	err = b.ns.Do(func() (err error) {
		fns, actual, err = b.Bind.Open(port)
		return err
	})
	return fns, actual, err
}

// A machine's root is homed on the server that first readied it (A).
// Attested on another server (B), its credential points at A's tunnel
// (endpoint, key, an address of A's prefix), A installs the peer (B
// installs nothing), and A's root provider readied the root. With A
// stopped, B refuses the release with a check and a message saying the
// home server is down, and installs nothing.
func TestClusterHomeServer(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	tnA, nsA := homeTunnel(t, 'a', "10.202.0.0/24", "192.0.2.10:51820")
	tnB, _ := homeTunnel(t, 'b', "10.203.0.0/24", "192.0.2.11:51820")
	rootsA := newHeldRoots() // serves the stored plan, counts withdrawals
	var prepared atomic.Int64
	countA := countingRoots{heldRoots: rootsA, n: &prepared}
	a, stopA := c.member(t, "a", func(cfg *attest.Config) {
		withTunnels(tnA, "")(cfg)
		cfg.Roots = countA
	})
	b, _ := c.member(t, "b", withTunnels(tnB, ""))

	m := newMachine(t, defaultSpec)
	a.enrollAndApprove(t, m, "node-home")
	key := wgKey(t)
	if _, err := attestOnce(t, a.client(t, m.dev, func(c *agentattest.Config) { c.WireGuardKey = key })); err != nil {
		t.Fatalf("first boot on A: %v", err)
	}
	homes, err := c.store(t).Homes(ctx)
	if err != nil || homes[m.id] != "a" {
		t.Fatalf("homes = %v, %v; want %s homed on a", homes, err, m.id)
	}

	m.reboot(t)
	priv2, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	key2 := priv2.PublicKey()
	before := prepared.Load()
	res, err := attestOnce(t, b.client(t, m.dev, func(c *agentattest.Config) { c.WireGuardKey = key2[:] }))
	if err != nil {
		t.Fatalf("attest on B of a machine homed on A: %v", err)
	}
	plan := res.Payload.Tunnel
	pubA := tnA.PublicKey()
	if plan == nil || plan.Endpoint != "192.0.2.10:51820" || !slices.Equal(plan.ServerKey, pubA[:]) || plan.ServerAddr != tnA.ServerAddr().String() {
		t.Fatalf("tunnel plan from B = %+v, want A's endpoint, key and address", plan)
	}
	if addr, err := netip.ParsePrefix(plan.Address); err != nil || !netip.MustParsePrefix("10.202.0.0/24").Contains(addr.Addr()) {
		t.Errorf("machine address %q, want one of A's prefix", plan.Address)
	}
	if got := tnA.Peers(); !slices.Equal(got, []string{m.id}) {
		t.Errorf("A's peers = %v, want the machine", got)
	}
	if got := tnB.Peers(); len(got) != 0 {
		t.Errorf("B's peers = %v, want none: the machine's home is A", got)
	}
	if n := prepared.Load() - before; n != 1 {
		t.Errorf("A readied the root %d times for B's release, want once", n)
	}
	// The agent's per-boot key, released by B, handshakes with A: A
	// installed the peer B's release carried. (A's socket is in its
	// namespace: the plan's endpoint stands for it.)
	if err := handshake(t, nsA, priv2, plan.ServerKey, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(tnA.Port()))); err != nil {
		t.Fatalf("WireGuard handshake with the home server A: %v", err)
	}

	stopA()
	m.reboot(t)
	_, err = attestOnce(t, b.client(t, m.dev, func(c *agentattest.Config) { c.WireGuardKey = wgKey(t) }))
	var r *agentattest.RefusedError
	if !errors.As(err, &r) || r.Check != wire.CheckHomeServerDown || !strings.Contains(r.Reason, "home server a is down") {
		t.Fatalf("attest on B with A down = %v, want refused by %q naming server a", err, wire.CheckHomeServerDown)
	}
	if got := tnB.Peers(); len(got) != 0 {
		t.Errorf("B's peers = %v after a refused release, want none", got)
	}
}

// countingRoots counts the roots it readies.
type countingRoots struct {
	*heldRoots
	n *atomic.Int64
}

func (c countingRoots) Prepare(ctx context.Context, req roots.Request) (wire.RootPlan, map[string][]byte, error) {
	c.n.Add(1)
	return c.heldRoots.Prepare(ctx, req)
}

// store opens another client's view of c's store.
func (c *cluster) store(t *testing.T) *store.Etcd {
	t.Helper()
	st, err := store.NewEtcd(context.Background(), c.etcd.Client(), c.prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A machine whose iSCSI root lives on A, attested on B: the credential
// carries A's portal, target and the fresh CHAP credentials A generated
// (sent to B encrypted to every member of the secrets keyring: each
// server has its own age identity, B joined by A), and they log in to
// A's target; B, which has an iSCSI provider of its own, serves nothing.
// Revoked on B, the machine loses its target on A.
func TestClusterHomeISCSIRoot(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	c.ownKeys = true
	rA, rB := newRootEnv(t), newRootEnv(t)
	a, _ := c.member(t, "a", withRoots(rA.p))
	b, _ := c.member(t, "b", withRoots(rB.p))
	m := newMachine(t, defaultSpec)
	a.enrollAndApprove(t, m, "node-hi")
	if _, err := c.store(t).UpdateMachine(ctx, m.id, func(mc *store.Machine) error {
		mc.Root = wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "tiny"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := attestOnce(t, a.client(t, m.dev)); err != nil {
		t.Fatalf("first boot on A: %v", err)
	}
	m.reboot(t)
	res, err := attestOnce(t, b.client(t, m.dev))
	if err != nil {
		t.Fatalf("attest on B: %v", err)
	}
	p := res.Payload
	if p.Root.Kind != wire.RootISCSI || p.Root.Params[wire.ISCSIPortal] != rA.portal {
		t.Fatalf("root plan from B = %+v, want A's portal %s", p.Root, rA.portal)
	}
	for _, name := range []string{wire.SecretCHAPUser, wire.SecretCHAPSecret, wire.SecretCHAPTargetUser, wire.SecretCHAPTargetSecret} {
		if len(p.Secrets[name]) < 32 {
			t.Errorf("secret %s = %q, want a fresh CHAP value from A", name, p.Secrets[name])
		}
	}
	if got, err := rootCapacity(t, p.Root, p.Secrets); err != nil || got != rA.image.Size {
		t.Fatalf("login to A's target with the credential from B: capacity %d, %v; want %d", got, err, rA.image.Size)
	}
	if rB.p.Serving(m.id) {
		t.Error("B serves a target for a machine homed on A")
	}
	// Revoked on B: A sees it through the change feed and withdraws the
	// target, so the credential no longer logs in.
	if _, err := b.mgr.Revoke(ctx, m.id, "stolen"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); rA.p.Serving(m.id); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("A still serves the target of a machine revoked on B")
		}
	}
	if _, err := rootCapacity(t, p.Root, p.Secrets); err == nil {
		t.Fatal("the credential of a machine revoked on B still logs in to A")
	}
}

// A home server withdraws what it readied for another server's release
// when that release is not committed within Cluster.CommitWithin (the
// attesting server's final commit failed, or it died after the answer):
// here B's part is played by a store client that asks A and never
// commits. A readying superseded by a committed release is kept: the
// normal path, through a real server B, with a stale request before it.
func TestHomeWithdrawsBootNeverReleased(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	const bound = 2 * time.Second
	c.commitWithin = bound
	tnA, _ := homeTunnel(t, 'a', "10.204.0.0/24", "192.0.2.10:51820")
	tnB, _ := homeTunnel(t, 'b', "10.205.0.0/24", "192.0.2.11:51820")
	a, _ := c.member(t, "a", withTunnels(tnA, ""))
	b, _ := c.member(t, "b", withTunnels(tnB, ""))
	m := newMachine(t, defaultSpec)
	a.enrollAndApprove(t, m, "node-uncommitted")
	if _, err := attestOnce(t, a.client(t, m.dev, func(c *agentattest.Config) { c.WireGuardKey = wgKey(t) })); err != nil {
		t.Fatalf("first boot on A: %v", err)
	}
	st := c.store(t)
	defer st.Close()
	// askNeverCommit asks A to ready a boot as B's release would, then
	// commits nothing.
	askNeverCommit := func() {
		t.Helper()
		rec, err := st.MachineRecord(ctx, m.id)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := store.EffectiveRoot(ctx, st, rec)
		if err != nil {
			t.Fatal(err)
		}
		ans, err := st.AskHome(ctx, store.HomeRequest{Home: "a", From: "b", MachineID: m.id, Version: rec.Version,
			BootCount: rec.BootCount, WireGuardKey: wgKey(t), Plan: plan, RemoteAddr: "127.0.0.1:4433"})
		if err != nil || ans.Check != "" || ans.Tunnel == nil {
			t.Fatalf("AskHome = %+v, %v; want A's tunnel plan", ans, err)
		}
	}
	peerOnA := func() bool { return slices.Contains(tnA.Peers(), m.id) }

	m.reboot(t)
	asked := time.Now()
	askNeverCommit()
	if !peerOnA() {
		t.Fatal("A installed no peer for the request")
	}
	for peerOnA() {
		if time.Since(asked) > bound+5*time.Second {
			t.Fatalf("A still holds the peer %v after a home request whose release never committed (bound %v)",
				time.Since(asked).Round(time.Millisecond), bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(asked)
	t.Logf("peer withdrawn %v after the answer (bound %v)", took.Round(time.Millisecond), bound)
	if took < bound {
		t.Errorf("peer withdrawn after %v, before the bound %v", took, bound)
	}

	// A stale request, then a real release through B that asks A again
	// and commits: A keeps the committed boot's peer past the bound.
	askNeverCommit()
	key := wgKey(t)
	if _, err := attestOnce(t, b.client(t, m.dev, func(c *agentattest.Config) { c.WireGuardKey = key })); err != nil {
		t.Fatalf("attest on B: %v", err)
	}
	time.Sleep(2*bound + time.Second)
	if !peerOnA() {
		t.Fatal("A withdrew the peer of a boot B released and committed")
	}
	if got := tnB.Peers(); len(got) != 0 {
		t.Errorf("B's peers = %v, want none", got)
	}
}
