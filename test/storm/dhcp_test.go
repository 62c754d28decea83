package storm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/sealroot/sealroot/server/boot/udpbuf"
	"github.com/sealroot/sealroot/test/netnstest"
)

// dhcpMode is how the storm's machines get their addresses and boot
// files (SEALROOT_STORM_DHCP).
type dhcpMode string

const (
	// modeProxy (the default, as boot.dhcp_mode's): the machines have
	// their addresses (from the site's DHCP server, not simulated) and
	// ask the server's ProxyDHCP for their boot files: firmware PXE's
	// DISCOVER is answered with an OFFER naming the iPXE binary, iPXE's
	// DISCOVER with one that iPXE follows with a REQUEST to port 4011,
	// whose ACK names the script URL.
	modeProxy dhcpMode = "proxy"
	// modeFull: they lease their addresses from the server's full DHCP
	// (firmware PXE, then iPXE, then the agent, each a DISCOVER..ACK).
	modeFull dhcpMode = "full"
	// modeNone: they have their addresses and start at TFTP, no DHCP.
	modeNone dhcpMode = "none"
)

// stormDHCP is SEALROOT_STORM_DHCP: proxy (or unset), full or none.
func stormDHCP() (dhcpMode, error) {
	switch v := dhcpMode(os.Getenv("SEALROOT_STORM_DHCP")); v {
	case "":
		return modeProxy, nil
	case modeProxy, modeFull, modeNone:
		return v, nil
	default:
		return "", fmt.Errorf("SEALROOT_STORM_DHCP %q: want proxy (the default), full or none", v)
	}
}

// The DHCP clients of one boot, as the server's classifier tells them
// apart (server/boot/dhcp classify): BIOS firmware PXE, iPXE (user class
// "iPXE"), the agent (vendor class sealroot-agent, agent/netup).
type dhcpClient int

const (
	clientPXE dhcpClient = iota
	clientIPXE
	clientAgent
)

// modifiers are the options each client sends in DISCOVER and REQUEST.
func (c dhcpClient) modifiers() []dhcpv4.Modifier {
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
	switch c {
	case clientPXE:
		return pxe
	case clientIPXE:
		return append(pxe, dhcpv4.WithUserClass("iPXE", false))
	default:
		return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("sealroot-agent"))}
	}
}

// dhcpLink is a client namespace's DHCP socket on its eth0 (port 68,
// broadcast), shared by the namespace's machines as their NICs would share
// a wire: every reply is broadcast and each machine takes those with its
// transaction ID.
type dhcpLink struct {
	conn net.PacketConn
	done chan struct{}

	mu      sync.Mutex
	waiters map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4 // guarded by mu
}

func newDHCPLink(ns *netnstest.NS) (*dhcpLink, error) {
	l := &dhcpLink{done: make(chan struct{}), waiters: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}
	err := ns.Do(func() (err error) {
		l.conn, err = server4.NewIPv4UDPConn("eth0", &net.UDPAddr{Port: dhcpv4.ClientPort})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dhcp client socket in %s: %w", ns.Name, err)
	}
	// Every reply is broadcast to every namespace: with the default
	// buffer this one socket, standing for a hundred NICs, dropped what
	// a hundred machines would each have received.
	udpbuf.Grow(l.conn)
	go l.read()
	return l, nil
}

func (l *dhcpLink) read() {
	defer close(l.done)
	buf := make([]byte, 1500)
	for {
		n, _, err := l.conn.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		l.mu.Lock()
		ch := l.waiters[m.TransactionID]
		l.mu.Unlock()
		select {
		case ch <- m: // nil ch: not ours, dropped
		default:
		}
	}
}

func (l *dhcpLink) close() {
	l.conn.Close()
	<-l.done
}

// bootFile runs what firmware PXE (c clientPXE) or iPXE (clientIPXE)
// does next to a ProxyDHCP server (PXE 2.1; iPXE's dhcp.c): DISCOVER
// until an OFFER names a boot file; iPXE then asks the ProxyDHCP server
// again with a REQUEST to port 4011 from its address addr (in ns, from
// an ephemeral port: the server answers the sender) and boots the file
// its ACK names. Firmware boots the OFFER's file (BIOS PXE with the
// discovery bypass of option 43 the server sends).
func (l *dhcpLink) bootFile(ctx context.Context, ns *netnstest.NS, addr netip.Addr, mac net.HardwareAddr, c dhcpClient) (string, dhcpResult, error) {
	var r dhcpResult
	disc, err := dhcpv4.NewDiscovery(mac, c.modifiers()...)
	if err != nil {
		return "", r, err
	}
	offer, err := l.exchange(ctx, disc, dhcpv4.MessageTypeOffer, 0, &r)
	if err != nil {
		return "", r, fmt.Errorf("no ProxyDHCP OFFER: %w", err)
	}
	if c == clientPXE {
		if offer.BootFileName == "" {
			return "", r, errors.New("ProxyDHCP OFFER names no boot file")
		}
		return offer.BootFileName, r, nil
	}
	mods := append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mac),
		dhcpv4.WithClientIP(addr.AsSlice())}, c.modifiers()...)
	req, err := dhcpv4.New(mods...)
	if err != nil {
		return "", r, err
	}
	ack, err := proxyRequest(ctx, ns, addr, req, &r)
	if err != nil {
		return "", r, fmt.Errorf("ProxyDHCP REQUEST: %w", err)
	}
	if ack.BootFileName == "" {
		return "", r, errors.New("ProxyDHCP ACK names no boot file")
	}
	return ack.BootFileName, r, nil
}

// proxyRequest sends req to the server's port 4011 from addr until an ACK
// with its transaction ID comes back, waiting dhcpTimeouts between tries.
func proxyRequest(ctx context.Context, ns *netnstest.NS, addr netip.Addr, req *dhcpv4.DHCPv4, r *dhcpResult) (*dhcpv4.DHCPv4, error) {
	var conn *net.UDPConn
	err := ns.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(serverIP, pxePort))
	buf := make([]byte, 1500)
	for i := 0; ; i++ {
		if i > 0 {
			r.resends++
		}
		if _, err := conn.WriteTo(req.ToBytes(), dst); err != nil {
			return nil, err
		}
		conn.SetReadDeadline(time.Now().Add(dhcpTimeouts[min(i, len(dhcpTimeouts)-1)]))
		for {
			n, _, err := conn.ReadFrom(buf)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				break // timed out: send again
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && m.TransactionID == req.TransactionID && m.MessageType() == dhcpv4.MessageTypeAck {
				return m, nil
			}
		}
	}
}

// pxePort is the ProxyDHCP server's port for REQUESTs (PXE 2.1).
const pxePort = 4011

// dhcpResult is one DISCOVER..ACK exchange.
type dhcpResult struct {
	ack     *dhcpv4.DHCPv4
	resends int // DISCOVERs and REQUESTs sent again after no answer
	naks    int
}

// dhcpTimeouts are the waits for an answer before a retransmission, as
// PXE firmware uses them (PXE 2.1: 4, 8, 16, 32 s); later ones stay at
// the last.
var dhcpTimeouts = []time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second}

// lease runs DISCOVER, OFFER, REQUEST, ACK for mac as client c (RFC 2131
// 4.4.1): retransmitting after each timeout, starting over after a NAK or
// four unanswered REQUESTs, until ctx ends.
func (l *dhcpLink) lease(ctx context.Context, mac net.HardwareAddr, c dhcpClient) (dhcpResult, error) {
	var r dhcpResult
	for ctx.Err() == nil {
		disc, err := dhcpv4.NewDiscovery(mac, c.modifiers()...)
		if err != nil {
			return r, err
		}
		offer, err := l.exchange(ctx, disc, dhcpv4.MessageTypeOffer, 0, &r)
		if err != nil {
			return r, fmt.Errorf("no OFFER: %w", err)
		}
		req, err := dhcpv4.NewRequestFromOffer(offer, c.modifiers()...)
		if err != nil {
			return r, err
		}
		ack, err := l.exchange(ctx, req, dhcpv4.MessageTypeAck, 4, &r)
		switch {
		case errors.Is(err, errNAK), errors.Is(err, errNoAnswer):
			continue
		case err != nil:
			return r, err
		}
		r.ack = ack
		return r, nil
	}
	return r, ctx.Err()
}

var (
	errNAK      = errors.New("NAK")
	errNoAnswer = errors.New("no answer")
)

// exchange broadcasts m until a reply of type want (or a NAK) with m's
// transaction ID arrives, up to tries sends (0: until ctx ends).
func (l *dhcpLink) exchange(ctx context.Context, m *dhcpv4.DHCPv4, want dhcpv4.MessageType, tries int, r *dhcpResult) (*dhcpv4.DHCPv4, error) {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	l.mu.Lock()
	l.waiters[m.TransactionID] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.waiters, m.TransactionID)
		l.mu.Unlock()
	}()
	dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	for i := 0; tries == 0 || i < tries; i++ {
		if i > 0 {
			r.resends++
		}
		if _, err := l.conn.WriteTo(m.ToBytes(), dst); err != nil {
			return nil, fmt.Errorf("send %s: %w", m.MessageType(), err)
		}
		timer := time.NewTimer(dhcpTimeouts[min(i, len(dhcpTimeouts)-1)])
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			case <-timer.C:
				break wait
			case reply := <-ch:
				switch reply.MessageType() {
				case want:
					timer.Stop()
					return reply, nil
				case dhcpv4.MessageTypeNak:
					timer.Stop()
					r.naks++
					return nil, errNAK
				}
			}
		}
	}
	return nil, errNoAnswer
}

// macOf is machine i's MAC address (locally administered).
func macOf(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x77, 0, byte(i >> 16), byte(i >> 8), byte(i)}
}

// yourAddr is the leased address of an ACK.
func yourAddr(ack *dhcpv4.DHCPv4) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("ACK without an address")
	}
	return a, nil
}
