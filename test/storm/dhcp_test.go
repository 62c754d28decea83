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

// dhcpMode is SEALROOT_STORM_DHCP: "" (the machines have their addresses
// and start at TFTP) or "full" (they lease them from the server's full
// DHCP: firmware PXE, then iPXE, then the agent, each a DISCOVER..ACK).
func dhcpMode() (string, error) {
	switch v := os.Getenv("SEALROOT_STORM_DHCP"); v {
	case "", "full":
		return v, nil
	default:
		return "", fmt.Errorf("SEALROOT_STORM_DHCP %q: want full or nothing", v)
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
