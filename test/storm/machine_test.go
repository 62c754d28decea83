package storm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/quic-go/quic-go"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/agent/tunnel"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/wire"
)

// Phases of a simulated boot, in order.
const (
	phaseDHCPPXE = iota
	phaseTFTP
	phaseDHCPIPXE
	phaseScript
	phaseKernel
	phaseInitrd
	phaseDHCPAgent
	phaseAttest
	phaseWireGuard
	phaseLogin
	phaseRootRead
	numPhases
)

var phaseNames = [numPhases]string{"dhcp pxe", "tftp ipxe", "dhcp ipxe", "http script", "http kernel", "http initrd", "dhcp agent", "attest", "wireguard", "root login", "root read"}

// phaseName names phase p of a boot whose root is of kind: its login is
// an iSCSI login or an NFS mount (EXCHANGE_ID to the export's lookup).
func phaseName(p int, kind string) string {
	if p == phaseLogin {
		if kind == rootKindNFS {
			return "nfs mount"
		}
		return "iscsi login"
	}
	return phaseNames[p]
}

// machine is one simulated machine: its address, namespace and software
// TPM.
type machine struct {
	addr   netip.Addr // invalid until leased, in full-DHCP mode
	ns     *netnstest.NS
	link   *dhcpLink // nil: no DHCP
	mode   dhcpMode  // modeFull: addr is leased; else it is fixed
	mac    net.HardwareAddr
	agent  *loadgen.Agent
	roots  *x509.CertPool
	tr     *quic.Transport // bound to addr, for the attestation client
	client *agentattest.Client
	http   *nethttp.Client
	wgKey  wgtypes.Key // this boot's WireGuard key, sent in the hello

	rootKind string // rootKindISCSI or rootKindNFS
	rootData []byte // the root image's file (rootFileName), to check NFS reads against
}

// newMachine makes machine i: with a fixed address addr, or in full-DHCP
// mode one it leases over link (then addr is invalid).
func newMachine(ns *netnstest.NS, link *dhcpLink, mode dhcpMode, i int, addr netip.Addr, agent *loadgen.Agent, roots *x509.CertPool) (*machine, error) {
	m := &machine{ns: ns, link: link, mode: mode, mac: macOf(i), agent: agent, roots: roots}
	var err error
	if m.wgKey, err = tunnel.NewKey(); err != nil { // per boot, as the agent makes it
		return nil, err
	}
	m.http = &nethttp.Client{Transport: &nethttp.Transport{
		DialContext:        m.dialTCP,
		DisableCompression: true,
		MaxIdleConns:       1,
	}}
	if mode != modeFull {
		if err := m.bind(addr); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// bind gives the machine its attestation client on addr (as the agent
// starts on the address it leased).
func (m *machine) bind(addr netip.Addr) error {
	m.unbind()
	m.addr = addr
	var pc net.PacketConn
	err := m.ns.Do(func() (err error) {
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	})
	if err != nil {
		return fmt.Errorf("machine %s: udp socket: %w", addr, err)
	}
	m.tr = &quic.Transport{Conn: pc}
	pub := m.wgKey.PublicKey()
	m.client, err = agentattest.New(agentattest.Config{
		Servers: []string{netip.AddrPortFrom(serverIP, attestPort).String()}, ServerName: serverName,
		Roots: m.roots, Device: m.agent, Transport: m.tr, WireGuardKey: pub[:],
	})
	return err
}

func (m *machine) unbind() {
	if m.tr != nil {
		m.tr.Close()
		m.tr.Conn.Close()
		m.tr, m.client = nil, nil
	}
}

func (m *machine) close() {
	m.http.CloseIdleConnections()
	m.unbind()
}

// powerOff drops a leased address (a machine that powers on again has
// none until its firmware's DHCP).
func (m *machine) powerOff() error {
	m.http.CloseIdleConnections()
	m.unbind()
	if m.mode != modeFull || !m.addr.IsValid() {
		return nil
	}
	a := m.addr
	m.addr = netip.Addr{}
	return m.ns.Do(func() error { return netnstest.DelAddr("eth0", netip.PrefixFrom(a, 32)) })
}

// dhcp leases the machine's address as client c and takes it (when it
// differs from the one it has): what firmware, iPXE and the agent each do.
func (m *machine) dhcp(ctx context.Context, c dhcpClient, r *bootResult) (*dhcpv4.DHCPv4, error) {
	res, err := m.link.lease(ctx, m.mac, c)
	r.dhcpResends += res.resends
	r.dhcpNAKs += res.naks
	if err != nil {
		return nil, err
	}
	a, err := yourAddr(res.ack)
	if err != nil {
		return nil, err
	}
	if a == m.addr {
		return res.ack, nil
	}
	if err := m.powerOff(); err != nil {
		return nil, err
	}
	if err := m.ns.Do(func() error { return netnstest.AddAddr("eth0", netip.PrefixFrom(a, 32)) }); err != nil {
		return nil, err
	}
	m.addr = a
	return res.ack, nil
}

// proxyDHCP asks the server's ProxyDHCP for client c's boot file, as
// firmware PXE and iPXE do on a network whose DHCP server hands out the
// addresses (the machine has its own).
func (m *machine) proxyDHCP(ctx context.Context, c dhcpClient, r *bootResult) (string, error) {
	file, res, err := m.link.bootFile(ctx, m.ns, m.addr, m.mac, c)
	r.dhcpResends += res.resends
	return file, err
}

// dialTCP connects from the machine's address, in its namespace.
func (m *machine) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := m.ns.Do(func() (err error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(m.addr, 0))}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// bootResult is what one machine's boot took.
type bootResult struct {
	phase          [numPhases]time.Duration
	ready          time.Duration // from the storm's start to the credential
	bytes          int64         // TFTP and HTTP payload received
	rootBytes      int64         // read from the root over iSCSI in the tunnel
	tftpResends    int           // TFTP requests and acks sent again after PXE's timeout without answer
	httpRetries    int           // downloads refused 503, retried after the script's pause
	refetched      int64         // kernel bytes received again: the script started over after its kernel was in
	attRetries     int           // attestation attempts retried
	wgInits        int           // WireGuard handshake initiations sent (first and retransmitted)
	wgCookies      int           // WireGuard cookie replies received (server under load)
	dhcpResends    int           // DHCP DISCOVERs and REQUESTs sent again after no answer
	dhcpNAKs       int           // DHCP NAKs received
	rootRetries    int           // NFS compounds sent again after NFS4ERR_DELAY or NFS4ERR_GRACE
	rootRecoveries int           // NFS state recovered after the server lost the machine's session (lease expired)
	err            error
}

// boot runs the machine's boot from power-on to its credential.
func (m *machine) boot(ctx context.Context, start time.Time) (r bootResult) {
	timed := func(p int, fn func() error) error {
		t0 := time.Now()
		err := fn()
		r.phase[p] = time.Since(t0)
		if err != nil {
			return fmt.Errorf("%s: %w", phaseName(p, m.rootKind), err)
		}
		return nil
	}
	// Power on: the TPM resets and the firmware measures the boot again
	// (the last boot's unseal extended PCR 15).
	if r.err = m.agent.Reboot(); r.err != nil {
		return r
	}
	ipxeFile, scriptURL := ipxeName, fmt.Sprintf("http://%s/boot.ipxe?arch=bios", netip.AddrPortFrom(serverIP, httpPort))
	switch m.mode {
	case modeFull:
		if r.err = m.powerOff(); r.err != nil {
			return r
		}
		r.err = timed(phaseDHCPPXE, func() error {
			ack, err := m.dhcp(ctx, clientPXE, &r)
			if err == nil {
				ipxeFile = ack.BootFileName
			}
			return err
		})
	case modeProxy:
		r.err = timed(phaseDHCPPXE, func() (err error) {
			ipxeFile, err = m.proxyDHCP(ctx, clientPXE, &r)
			return err
		})
	}
	if r.err != nil {
		return r
	}
	r.err = timed(phaseTFTP, func() error {
		n, resends, err := m.tftp(ctx, ipxeFile)
		r.bytes += n
		r.tftpResends = resends
		return err
	})
	if r.err == nil && m.mode == modeFull {
		r.err = timed(phaseDHCPIPXE, func() error {
			ack, err := m.dhcp(ctx, clientIPXE, &r)
			if err == nil {
				scriptURL = ack.BootFileName
			}
			return err
		})
	}
	if r.err == nil && m.mode == modeProxy {
		r.err = timed(phaseDHCPIPXE, func() (err error) {
			scriptURL, err = m.proxyDHCP(ctx, clientIPXE, &r)
			return err
		})
	}
	if r.err != nil {
		return r
	}
	var script []byte
	r.err = timed(phaseScript, func() (err error) {
		script, err = m.get(ctx, scriptURL)
		r.bytes += int64(len(script))
		return err
	})
	if r.err != nil {
		return r
	}
	if r.err = m.ipxe(ctx, script, &r); r.err != nil {
		return r
	}
	if m.mode == modeFull {
		r.err = timed(phaseDHCPAgent, func() error {
			if _, err := m.dhcp(ctx, clientAgent, &r); err != nil {
				return err
			}
			if m.client != nil {
				return nil // the address did not change
			}
			return m.bind(m.addr)
		})
		if r.err != nil {
			return r
		}
	}
	var payload *wire.Payload
	r.err = timed(phaseAttest, func() error {
		var console lineCounter
		res, err := m.client.Attest(ctx, &console)
		r.attRetries = int(console.retries.Load())
		if err != nil {
			return fmt.Errorf("%w (console: %s)", err, console.last())
		}
		payload = res.Payload
		return nil
	})
	if r.err != nil {
		return r
	}
	var dev *device.Device
	var tnet *netstack.Net
	r.err = timed(phaseWireGuard, func() (err error) {
		var ev wgEvents
		dev, tnet, err = m.wireguard(ctx, &ev, payload.Tunnel)
		r.wgInits, r.wgCookies = int(ev.initiations.Load()), int(ev.cookies.Load())
		return err
	})
	if dev != nil {
		defer dev.Close()
	}
	if r.err != nil {
		return r
	}
	r.err = m.root(ctx, tnet, payload, &r, timed)
	r.ready = time.Since(start)
	return r
}

// wireguard brings up the machine's end of its tunnel as the plan in
// its opened credential says and waits for the handshake, which succeeds
// only once the server installed the machine's peer (before it released
// the credential). The agent uses the kernel's WireGuard; this host has
// no module, so the device is wireguard-go on a gVisor netstack (the
// machine's TCP to its root runs in the test process) and a bind whose
// socket is opened in the machine's namespace on the machine's address
// (addrBind). As a real peer, the one device retransmits its initiation
// after 5s without answer (counted in retries) and answers a cookie reply
// with a mac2 on the next one. The caller closes the device.
func (m *machine) wireguard(ctx context.Context, ev *wgEvents, plan *wire.TunnelPlan) (*device.Device, *netstack.Net, error) {
	local, server, err := tunnelAddrs(plan)
	if err != nil {
		return nil, nil, err
	}
	tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{local}, nil, 1420)
	if err != nil {
		return nil, nil, fmt.Errorf("netstack: %w", err)
	}
	dev := device.NewDevice(tdev, &addrBind{ns: m.ns, addr: m.addr}, ev.logger())
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=25\nallowed_ip=%s/32\n",
		hex.EncodeToString(m.wgKey[:]), hex.EncodeToString(plan.ServerKey), plan.Endpoint, server)
	if err := dev.IpcSet(cfg); err != nil {
		return dev, nil, fmt.Errorf("configure: %w", err)
	}
	if err := dev.Up(); err != nil {
		return dev, nil, fmt.Errorf("up: %w", err)
	}
	for ev.responses.Load() == 0 {
		select {
		case <-ctx.Done():
			return dev, nil, fmt.Errorf("no handshake after %d initiations (%d cookie replies): %w",
				ev.initiations.Load(), ev.cookies.Load(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return dev, tnet, nil
}

// root reaches the machine's root through the tunnel as its plan says and
// reads what a boot reads from it: an iSCSI login with the CHAP
// credentials of its opened credential, or an NFSv4.2 mount of its export.
func (m *machine) root(ctx context.Context, tnet *netstack.Net, p *wire.Payload, r *bootResult, timed func(int, func() error) error) error {
	var server netip.AddrPort
	var err error
	if m.rootKind == rootKindNFS {
		server, err = nfsEndpoint(&p.Root)
	} else if server, err = netip.ParseAddrPort(p.Root.Params[wire.ISCSIPortal]); err != nil {
		err = fmt.Errorf("root plan portal %q: %w", p.Root.Params[wire.ISCSIPortal], err)
	}
	if err != nil {
		return err
	}
	var conn net.Conn
	var read func() (int64, error)
	err = timed(phaseLogin, func() error {
		c, err := tnet.DialContextTCPAddrPort(ctx, server)
		if err != nil {
			return fmt.Errorf("dial %s in the tunnel: %w", server, err)
		}
		conn = c
		var login func() error
		if m.rootKind == rootKindNFS {
			login, read = nfsRoot(ctx, conn, p, "storm "+m.addr.String(), m.rootData, rootReadSize(), &r.rootRetries, &r.rootRecoveries)
		} else {
			a := m.addr.As4()
			login, read = iscsiRoot(ctx, conn, p, [6]byte{0x80, 0, a[0], a[1], a[2], a[3]}, rootReadSize())
		}
		return login()
	})
	if conn != nil {
		defer conn.Close()
	}
	if err != nil {
		return err
	}
	return timed(phaseRootRead, func() error {
		n, err := read()
		r.rootBytes += n
		return err
	})
}

// ipxe runs a boot script as iPXE does: fetch the kernel, then the
// initrd; any failure jumps to :failed, which sleeps and starts over.
func (m *machine) ipxe(ctx context.Context, script []byte, r *bootResult) error {
	kernel, initrd, pause, err := parseScript(script)
	if err != nil {
		return err
	}
	kernelIn := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			r.httpRetries++
			select {
			case <-ctx.Done():
				return fmt.Errorf("ipxe: %w", ctx.Err())
			case <-time.After(pause):
			}
		}
		t0 := time.Now()
		n, kerr := m.download(ctx, kernel)
		r.phase[phaseKernel] += time.Since(t0)
		r.bytes += n
		if kerr != nil {
			if errors.Is(kerr, errBusy) {
				continue
			}
			return fmt.Errorf("%s: %w", phaseNames[phaseKernel], kerr)
		}
		if kernelIn {
			r.refetched += n
		}
		kernelIn = true
		t0 = time.Now()
		n, ierr := m.download(ctx, initrd)
		r.phase[phaseInitrd] += time.Since(t0)
		r.bytes += n
		if ierr != nil {
			if errors.Is(ierr, errBusy) {
				continue
			}
			return fmt.Errorf("%s: %w", phaseNames[phaseInitrd], ierr)
		}
		return nil
	}
}

// parseScript finds the kernel and initrd URLs and the retry pause of a
// sealroot BIOS boot script.
func parseScript(b []byte) (kernel, initrd string, pause time.Duration, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && f[0] == "kernel":
			kernel = f[1]
		case len(f) >= 2 && f[0] == "initrd":
			initrd = f[1]
		case len(f) == 2 && f[0] == "sleep":
			s, _ := strconv.Atoi(f[1])
			pause = time.Duration(s) * time.Second
		}
	}
	if kernel == "" || initrd == "" || pause <= 0 {
		return "", "", 0, fmt.Errorf("boot script without kernel, initrd or pause:\n%s", b)
	}
	return kernel, initrd, pause, nil
}

var errBusy = errors.New("503 service unavailable")

func (m *machine) get(ctx context.Context, url string) ([]byte, error) {
	var buf bytes.Buffer
	_, err := m.fetch(ctx, url, &buf)
	return buf.Bytes(), err
}

func (m *machine) download(ctx context.Context, url string) (int64, error) {
	return m.fetch(ctx, url, io.Discard)
}

func (m *machine) fetch(ctx context.Context, url string, w io.Writer) (int64, error) {
	req, err := nethttp.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	switch {
	case resp.StatusCode == nethttp.StatusServiceUnavailable:
		return n, errBusy
	case resp.StatusCode != nethttp.StatusOK:
		return n, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return n, err
}

// lineCounter counts the agent's "retrying" console lines and keeps the
// last reason.
type lineCounter struct {
	retries atomic.Int64
	mu      sync.Mutex
	reason  string // guarded by mu
}

func (c *lineCounter) Write(p []byte) (int, error) {
	if n := bytes.Count(p, []byte("retrying attestation")); n > 0 {
		c.retries.Add(int64(n))
		return len(p), nil
	}
	c.mu.Lock()
	c.reason = strings.TrimSpace(string(p))
	c.mu.Unlock()
	return len(p), nil
}

func (c *lineCounter) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// TFTP as legacy PXE firmware fetches iPXE (RFC 1350 with the RFC
// 2347/2348/2349 options): a first read request asks only the transfer
// size (tsize 0) and is aborted with an ERROR once the OACK names it; the
// second asks blksize 1456 (what Intel's PXE ROMs ask) and acknowledges
// each block in lock step. A request or ACK without an answer is sent again
// after tftpTimeout, tftpRetries times (EDK2's PXE: PXEBC_MTFTP_TIMEOUT 4 s,
// PXEBC_MTFTP_RETRIES 6).
const (
	tftpRRQ, tftpDATA, tftpACK, tftpERROR, tftpOACK = 1, 3, 4, 5, 6
	tftpBlksize                                     = 1456
	tftpTimeout                                     = 4 * time.Second
	tftpRetries                                     = 6
)

// tftp reads name from the server's TFTP port into nowhere and returns
// its size and how many packets it sent again.
func (m *machine) tftp(ctx context.Context, name string) (got int64, resends int, err error) {
	var conn *net.UDPConn
	err = m.ns.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(m.addr, 0)))
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	server := netip.AddrPortFrom(serverIP, 69)
	buf := make([]byte, 4+tftpBlksize+64)
	var probe netip.AddrPort // the size probe's transfer, over once aborted
	// exchange sends p to the server's port to until a packet of the
	// transfer arrives.
	exchange := func(p []byte, to netip.AddrPort) ([]byte, netip.AddrPort, error) {
		for tries := 0; ; tries++ {
			if err := ctx.Err(); err != nil {
				return nil, to, err
			}
			if _, err := conn.WriteToUDPAddrPort(p, to); err != nil {
				return nil, to, err
			}
			conn.SetReadDeadline(time.Now().Add(tftpTimeout))
			for {
				n, from, err := conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				if n >= 4 && from != probe {
					return buf[:n], from, nil
				}
			}
			if tries >= tftpRetries {
				return nil, to, fmt.Errorf("tftp %s: no answer after %d tries", name, tries+1)
			}
			resends++
		}
	}
	p, peer, err := exchange(fmt.Appendf([]byte{0, tftpRRQ}, "%s\x00octet\x00tsize\x000\x00", name), server)
	if err != nil {
		return 0, resends, err
	}
	if binary.BigEndian.Uint16(p) != tftpOACK {
		return 0, resends, fmt.Errorf("tftp %s: size probe answered with opcode %d, want OACK", name, binary.BigEndian.Uint16(p))
	}
	conn.WriteToUDPAddrPort(append([]byte{0, tftpERROR, 0, 0}, "TFTP Aborted\x00"...), peer)
	probe = peer

	rrq := fmt.Appendf([]byte{0, tftpRRQ}, "%s\x00octet\x00blksize\x00%d\x00", name, tftpBlksize)
	p, peer, err = exchange(rrq, server)
	blksize, next := 512, uint16(1)
	for err == nil {
		switch binary.BigEndian.Uint16(p) {
		case tftpOACK:
			if next != 1 {
				return got, resends, fmt.Errorf("tftp %s: OACK during the transfer", name)
			}
			if v, ok := tftpOption(p[2:], "blksize"); ok {
				blksize = v
			}
			p, peer, err = exchange([]byte{0, tftpACK, 0, 0}, peer)
		case tftpDATA:
			if binary.BigEndian.Uint16(p[2:]) != next {
				// A duplicate: acknowledge it again.
				p, peer, err = exchange([]byte{0, tftpACK, byte((next - 1) >> 8), byte(next - 1)}, peer)
				continue
			}
			got += int64(len(p) - 4)
			ack := []byte{0, tftpACK, byte(next >> 8), byte(next)}
			next++
			if len(p)-4 < blksize {
				conn.WriteToUDPAddrPort(ack, peer)
				return got, resends, nil
			}
			p, peer, err = exchange(ack, peer)
		case tftpERROR:
			return got, resends, fmt.Errorf("tftp %s: server error: %q", name, p[4:])
		default:
			return got, resends, fmt.Errorf("tftp %s: opcode %d", name, binary.BigEndian.Uint16(p))
		}
	}
	return got, resends, err
}

// tftpOption is the numeric value of option name in an OACK's body.
func tftpOption(b []byte, name string) (int, bool) {
	f := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	for i := 0; i+1 < len(f); i += 2 {
		if strings.EqualFold(f[i], name) {
			v, err := strconv.Atoi(f[i+1])
			return v, err == nil
		}
	}
	return 0, false
}
