// Package tunnel is the server end of sealroot's protected root link: an
// embedded wireguard-go device with one peer per attested machine.
//
// A machine's peer is installed by [Tunnel.Add] only after its attestation
// succeeded, with AllowedIPs = the machine's own /32. WireGuard's
// cryptokey routing then makes the inner source address of every packet an
// authenticated identity: [Tunnel.PeerAddr] maps it back to the machine,
// and storage services key their access control on it. [Tunnel.Remove]
// (revocation) drops the peer and closes the machine's sessions at once.
//
// # Addresses
//
// The server takes the first host address of Config.Prefix. A machine's
// address is chosen once, deterministically from its ID (SHA-256 of the ID
// modulo the number of host addresses, probing upwards on a collision), and
// then persisted in Config.StatePath together with its current peer key,
// so a machine keeps its address and its peer across server restarts. The
// deterministic first choice keeps addresses stable even if the state file
// is lost, unless two machines collided.
//
// # Network stacks
//
// With Config.UseTUN (root only) the device is a kernel interface holding
// the server address, so external daemons see real tunnel source
// addresses; [Tunnel.Listen] then binds to that address and the interface
// (SO_BINDTODEVICE), so a LAN packet addressed to the tunnel address is not
// accepted. That interface is the kernel's own WireGuard when the kernel
// has it (module wireguard; configured over netlink with wgctrl, see
// kernel.go), else a TUN device driven by the embedded wireguard-go, whose
// TUN offloads (IFF_VNET_HDR: TSO/USO, GSO/GRO batches) and UDP GSO/GRO
// are on whenever the kernel offers them; Config.Userspace forces
// wireguard-go. Otherwise the tunnel uses an in-process network stack
// (tun/netstack): no privileges, and its sockets are reachable only
// through WireGuard.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sealroot/sealroot/internal/atomicfile"
	"github.com/sealroot/sealroot/wire"
)

// DefaultKeepalive is the persistent keepalive of every peer, on both ends.
const DefaultKeepalive = 10 * time.Second

// DefaultMTU is the tunnel MTU: 1500 minus WireGuard's IPv6 overhead.
const DefaultMTU = 1420

// Errors returned by Add.
var (
	// ErrBadKey is a peer key that is not 32 bytes or is the server's own.
	ErrBadKey = errors.New("tunnel: invalid peer key")
	// ErrKeyInUse is a peer key already installed for another machine.
	ErrKeyInUse = errors.New("tunnel: peer key in use by another machine")
	// ErrFull means the prefix has no free address left.
	ErrFull = errors.New("tunnel: no free address in the prefix")
)

// Config configures a Tunnel.
type Config struct {
	// Prefix is the tunnel network, IPv4, e.g. 10.200.0.0/16; the server
	// takes its first host address. Required.
	Prefix netip.Prefix
	// ListenPort is the UDP port; 0 picks a free one (see Tunnel.Port).
	ListenPort int
	// Endpoint is the ip:port agents send to. Required.
	Endpoint string
	// PrivateKeyPath holds the server's key (mode 0600), created if
	// missing. Empty: a fresh key per start (tests).
	PrivateKeyPath string
	// StatePath persists address allocations and peers (JSON). Empty: in
	// memory only (tests).
	StatePath string
	// UseTUN makes a kernel TUN interface (needs root); else netstack.
	UseTUN bool
	// Interface names the TUN interface; default "sealroot0".
	Interface string
	// Userspace makes a UseTUN tunnel use wireguard-go on a TUN device
	// even when the kernel has WireGuard (benchmarks compare the two).
	Userspace bool
	// Keepalive is every peer's persistent keepalive; default
	// DefaultKeepalive.
	Keepalive time.Duration
	// MTU defaults to DefaultMTU.
	MTU int
	// Logger defaults to a null logger.
	Logger hclog.Logger
}

// Tunnel is a running server tunnel. It is safe for concurrent use.
type Tunnel struct {
	cfg        Config
	logger     hclog.Logger
	dev        engine // *device.Device or *kernelEngine
	net        netif
	serverAddr netip.Addr
	pub        wgtypes.Key
	port       int

	mu       sync.Mutex // guards alloc and sessions, serializes peer changes
	alloc    *allocator
	sessions map[netip.Addr]map[*session]struct{}
	closed   bool

	stop     chan struct{} // closed by Close: recordEndpoints returns
	recorded chan struct{} // closed when recordEndpoints has returned
}

// New creates the device, installs the persisted peers and brings it up.
// The UDP socket (all addresses, Config.ListenPort) and the TUN interface
// are created in the calling thread's network namespace.
func New(cfg Config) (*Tunnel, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	priv, err := loadOrCreateKey(cfg.PrivateKeyPath)
	if err != nil {
		return nil, err
	}
	alloc, err := loadAllocator(cfg.StatePath, cfg.Prefix)
	if err != nil {
		return nil, err
	}
	t := &Tunnel{
		cfg:        cfg,
		logger:     cfg.Logger.Named("tunnel"),
		serverAddr: serverAddr(cfg.Prefix),
		pub:        priv.PublicKey(),
		alloc:      alloc,
		sessions:   make(map[netip.Addr]map[*session]struct{}),
		stop:       make(chan struct{}),
		recorded:   make(chan struct{}),
	}
	if err := t.start(priv); err != nil {
		return nil, err
	}
	return t, nil
}

func (c *Config) defaults() error {
	if !c.Prefix.IsValid() || !c.Prefix.Addr().Is4() || c.Prefix.Bits() > 30 || c.Prefix.Bits() < 8 {
		return fmt.Errorf("tunnel: prefix %v: want an IPv4 prefix from /8 to /30", c.Prefix)
	}
	c.Prefix = c.Prefix.Masked()
	if _, err := netip.ParseAddrPort(c.Endpoint); err != nil {
		return fmt.Errorf("tunnel: endpoint %q: want ip:port: %w", c.Endpoint, err)
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return fmt.Errorf("tunnel: listen port %d", c.ListenPort)
	}
	if c.Interface == "" {
		c.Interface = "sealroot0"
	}
	if c.Keepalive <= 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return nil
}

// serverAddr is the first host address of p.
func serverAddr(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

func (t *Tunnel) start(priv wgtypes.Key) error {
	if err := t.newEngine(); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\n", hexKey(priv[:]), t.cfg.ListenPort)
	for id, a := range t.alloc.all() {
		if a.Key != nil {
			t.writePeer(&b, a.Key, a.Addr)
			// With its last endpoint and the persistent keepalive, the
			// device handshakes with the peer as soon as it is up: a
			// running machine gets its link back at once after a
			// restart instead of after its own rekey timeout.
			if a.Endpoint.IsValid() {
				fmt.Fprintf(&b, "endpoint=%s\n", a.Endpoint)
			}
			t.logger.Debug("restored peer", "machine", id, "addr", a.Addr, "endpoint", a.Endpoint)
		}
	}
	if err := t.dev.IpcSet(b.String()); err != nil {
		t.dev.Close()
		return fmt.Errorf("tunnel: configure device: %w", err)
	}
	if d, ok := t.dev.(*device.Device); ok { // a kernel link is already up
		if err := d.Up(); err != nil {
			t.dev.Close()
			return fmt.Errorf("tunnel: device up: %w", err)
		}
	}
	port, err := t.listenPort()
	if err != nil {
		t.dev.Close()
		return err
	}
	t.port = port
	go t.recordEndpoints()
	t.logger.Info("tunnel up", "server_addr", t.serverAddr, "port", port, "tun", t.cfg.UseTUN,
		"engine", t.Engine(), "public_key", t.pub.String())
	return nil
}

// newEngine sets t.dev and t.net: the kernel's WireGuard when UseTUN asks
// for a kernel interface and the kernel has WireGuard, else wireguard-go.
func (t *Tunnel) newEngine() error {
	if t.cfg.UseTUN && !t.cfg.Userspace {
		k, err := newKernelEngine(t.cfg.Interface, t.cfg.MTU, netip.PrefixFrom(t.serverAddr, t.cfg.Prefix.Bits()))
		if err == nil {
			t.dev, t.net = k, kernelNet{iface: t.cfg.Interface}
			return nil
		}
		t.logger.Info("kernel WireGuard unavailable: using wireguard-go", "error", err)
	}
	nif, tdev, err := newNetif(t.cfg, t.serverAddr)
	if err != nil {
		return err
	}
	wl := t.logger.Named("wireguard")
	t.net = nif
	t.dev = device.NewDevice(pinTUN(tdev), conn.NewDefaultBind(), &device.Logger{
		Verbosef: func(f string, a ...any) { wl.Trace(fmt.Sprintf(f, a...)) },
		Errorf:   func(f string, a ...any) { wl.Debug(fmt.Sprintf(f, a...)) },
	})
	return nil
}

// Engine names the WireGuard implementation: "kernel" or "wireguard-go".
func (t *Tunnel) Engine() string {
	if _, ok := t.dev.(*kernelEngine); ok {
		return "kernel"
	}
	return "wireguard-go"
}

func (t *Tunnel) writePeer(b *strings.Builder, key []byte, addr netip.Addr) {
	fmt.Fprintf(b, "public_key=%s\nreplace_allowed_ips=true\nallowed_ip=%s/32\npersistent_keepalive_interval=%d\n",
		hexKey(key), addr, int(t.cfg.Keepalive/time.Second))
}

func (t *Tunnel) listenPort() (int, error) {
	get, err := t.dev.IpcGet()
	if err != nil {
		return 0, fmt.Errorf("tunnel: read device: %w", err)
	}
	for _, line := range strings.Split(get, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			var p int
			_, err := fmt.Sscan(v, &p)
			return p, err
		}
	}
	return 0, errors.New("tunnel: device reports no listen port")
}

// Close removes the device; sessions end. Close is safe to call twice.
func (t *Tunnel) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	var all []*session
	for _, ss := range t.sessions {
		for s := range ss {
			all = append(all, s)
		}
	}
	t.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
	close(t.stop)
	<-t.recorded
	t.saveEndpoints()
	t.dev.Close()
	return nil
}

// recordEndpoints saves the peers' endpoints every keepalive interval
// until Close, so a restarted server can reach running machines first.
func (t *Tunnel) recordEndpoints() {
	defer close(t.recorded)
	tick := time.NewTicker(t.cfg.Keepalive)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.saveEndpoints()
		}
	}
}

// saveEndpoints reads the peers' current endpoints from the device and
// records those that changed.
func (t *Tunnel) saveEndpoints() {
	peers, err := t.devicePeers()
	if err != nil {
		t.logger.Warn("read peer endpoints", "error", err)
		return
	}
	byKey := map[string]netip.AddrPort{}
	for key, p := range peers {
		if p.Endpoint.IsValid() {
			byKey[key] = p.Endpoint
		}
	}
	t.mu.Lock()
	changed, gen := t.alloc.setEndpoints(byKey), t.alloc.gen
	t.mu.Unlock()
	if !changed {
		return
	}
	if err := t.commit(gen); err != nil {
		t.logger.Warn("save peer endpoints", "error", err)
	}
}

// commit returns once the state file (mode 0600, replaced atomically)
// holds generation gen of the allocations or a later one. Writes go one
// at a time, and each writes the newest state: the changes made while
// one was under way share the next (a storm's peers share their fsyncs
// instead of queueing one each behind t.mu). Call it without t.mu.
func (t *Tunnel) commit(gen uint64) error {
	a := t.alloc
	if a.path == "" {
		return nil
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if a.written >= gen {
		return nil
	}
	t.mu.Lock()
	raw, newest, err := a.encode()
	t.mu.Unlock()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(a.path, raw, 0o600); err != nil {
		return fmt.Errorf("tunnel: write state: %w", err)
	}
	a.written = newest
	return nil
}

// PublicKey is the server's WireGuard public key.
func (t *Tunnel) PublicKey() wgtypes.Key { return t.pub }

// Kernel reports whether the tunnel is a kernel TUN interface, whose
// addresses other programs (nfs-ganesha) can bind to.
func (t *Tunnel) Kernel() bool { return t.cfg.UseTUN }

// ServerAddr is the server's tunnel address.
func (t *Tunnel) ServerAddr() netip.Addr { return t.serverAddr }

// Port is the UDP port the device listens on.
func (t *Tunnel) Port() int { return t.port }

// Add installs peerKey as machineID's only peer (a rebooted machine
// replaces its old key) with AllowedIPs = the machine's /32, and returns
// the plan for the agent once the state file has it (commit). The
// machine's open sessions, which belonged to the old key, are closed.
func (t *Tunnel) Add(ctx context.Context, machineID string, peerKey []byte) (*wire.TunnelPlan, error) {
	if len(peerKey) != wgtypes.KeyLen || wgtypes.Key(peerKey) == t.pub {
		return nil, ErrBadKey
	}
	t.mu.Lock()
	plan, err := t.addLocked(machineID, peerKey)
	gen := t.alloc.gen
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := t.commit(gen); err != nil {
		return nil, err
	}
	return plan, nil
}

func (t *Tunnel) addLocked(machineID string, peerKey []byte) (*wire.TunnelPlan, error) {
	if owner, ok := t.alloc.keyOwner(peerKey); ok && owner != machineID {
		return nil, ErrKeyInUse
	}
	old, hadOld := t.alloc.get(machineID)
	addr, err := t.alloc.assign(machineID, peerKey)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if hadOld && old.Key != nil {
		fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hexKey(old.Key))
	}
	t.writePeer(&b, peerKey, addr)
	if err := t.dev.IpcSet(b.String()); err != nil {
		return nil, fmt.Errorf("tunnel: install peer: %w", err)
	}
	if hadOld {
		t.closeSessionsLocked(old.Addr)
	}
	t.logger.Info("peer installed", "machine", machineID, "addr", addr, "replaced", hadOld && old.Key != nil)
	return &wire.TunnelPlan{
		ServerKey:  t.pub[:],
		Endpoint:   t.cfg.Endpoint,
		Address:    netip.PrefixFrom(addr, t.cfg.Prefix.Bits()).String(),
		ServerAddr: t.serverAddr.String(),
	}, nil
}

// Remove drops machineID's peer at once and closes its sessions. The
// address stays reserved for the machine. Removing a machine without a
// peer does nothing.
func (t *Tunnel) Remove(machineID string) error {
	t.mu.Lock()
	a, ok := t.alloc.get(machineID)
	if !ok || a.Key == nil {
		t.mu.Unlock()
		return nil
	}
	if err := t.dev.IpcSet(fmt.Sprintf("public_key=%s\nremove=true\n", hexKey(a.Key))); err != nil {
		t.mu.Unlock()
		return fmt.Errorf("tunnel: remove peer: %w", err)
	}
	t.closeSessionsLocked(a.Addr)
	t.alloc.clearKey(machineID)
	gen := t.alloc.gen
	t.mu.Unlock()
	if err := t.commit(gen); err != nil {
		return err
	}
	t.logger.Info("peer removed", "machine", machineID, "addr", a.Addr)
	return nil
}

// Peers returns the IDs of machines with an installed peer.
func (t *Tunnel) Peers() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for id, a := range t.alloc.all() {
		if a.Key != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// PeerAddr returns the machine whose installed peer owns the tunnel source
// address of remote (a *net.TCPAddr, *net.UDPAddr or other ip:port
// address). Only addresses of installed peers match: cryptokey routing
// guarantees such a source is that machine.
func (t *Tunnel) PeerAddr(remote net.Addr) (machineID string, ok bool) {
	ip, ok := addrOf(remote)
	if !ok {
		return "", false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.alloc.byAddr(ip)
	if !ok {
		return "", false
	}
	a, _ := t.alloc.get(id)
	return id, a.Key != nil
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case *net.UDPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap(), err == nil
}

// MachineAddr returns the tunnel address allocated to machineID, if any.
func (t *Tunnel) MachineAddr(machineID string) (netip.Addr, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.alloc.get(machineID)
	return a.Addr, ok
}

func hexKey(k []byte) string { return fmt.Sprintf("%x", k) }
