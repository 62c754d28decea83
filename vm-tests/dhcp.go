package vmtest

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// BootFileFunc chooses the boot file name (a TFTP file or an iPXE URL) for
// a DHCP request. acked counts the ACKs already sent to the client's MAC,
// which tells a chainloaded iPXE from the first boot ROM.
type BootFileFunc func(req *dhcpv4.DHCPv4, acked int) string

// ServeDHCP runs a small DHCP server (not a ProxyDHCP) on the lab bridge
// until t ends, for tests that need PXE before sealroot's own ProxyDHCP is
// in the loop. It leases lab addresses from .100 on, one per MAC, with the
// lab address as server and TFTP server, and the boot file bootFile picks.
func (l *Lab) ServeDHCP(t testing.TB, bootFile BootFileFunc) {
	t.Helper()
	l.serveDHCP(t, bootFile)
}

func (l *Lab) serveDHCP(t testing.TB, bootFile BootFileFunc) {
	t.Helper()
	d := &dhcpServer{
		t: t, server: l.Addr.Addr(), mask: net.CIDRMask(l.Addr.Bits(), 32),
		next: l.Addr.Masked().Addr().As4(), bootFile: bootFile,
		leases: map[string]netip.Addr{}, acked: map[string]int{},
	}
	d.next[3] = 100
	var srv *server4.Server
	err := l.Do(func() (err error) {
		conn, err := server4.NewIPv4UDPConn(l.Bridge, &net.UDPAddr{Port: dhcpv4.ServerPort})
		if err != nil {
			return fmt.Errorf("dhcp listen on %s: %w", l.Bridge, err)
		}
		srv, err = server4.NewServer(l.Bridge, nil, d.handle, server4.WithConn(conn))
		return err
	})
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve()
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

// ServeSiteDHCP runs a site's plain DHCP server on the lab bridge until t
// ends: addresses from .100 on and nothing about booting (no boot file,
// no next server, no iPXE options), so a ProxyDHCP next to it, as
// sealroot's boot.dhcp_mode "proxy", tells the clients what to boot.
func (l *Lab) ServeSiteDHCP(t testing.TB) {
	t.Helper()
	l.serveDHCP(t, nil)
}

type dhcpServer struct {
	t        testing.TB
	server   netip.Addr
	mask     net.IPMask
	bootFile BootFileFunc // nil: a site server that says nothing about booting

	mu     sync.Mutex
	next   [4]byte
	leases map[string]netip.Addr // by MAC
	acked  map[string]int        // ACKs sent, by MAC
}

func (d *dhcpServer) handle(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
	default:
		return
	}
	mac := req.ClientHWAddr.String()
	d.mu.Lock()
	ip, ok := d.leases[mac]
	if !ok {
		ip = netip.AddrFrom4(d.next)
		d.next[3]++
		d.leases[mac] = ip
	}
	acked := d.acked[mac]
	if typ == dhcpv4.MessageTypeAck {
		d.acked[mac]++
	}
	d.mu.Unlock()

	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(ip.AsSlice()),
		dhcpv4.WithNetmask(d.mask),
		dhcpv4.WithLeaseTime(uint32(time.Hour / time.Second)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(d.server.AsSlice())),
	}
	var file string
	if d.bootFile != nil {
		file = d.bootFile(req, acked)
		mods = append(mods,
			dhcpv4.WithServerIP(d.server.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptTFTPServerName(d.server.String())),
			dhcpv4.WithOption(dhcpv4.OptBootFileName(file)),
			// iPXE: there is no ProxyDHCP to wait for (option 175, encapsulated
			// 176 "no-pxedhcp" = 1); iPXE otherwise waits for ProxyDHCP offers.
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{176, 1, 1})),
		)
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		d.t.Logf("dhcp: reply: %v", err)
		return
	}
	resp.BootFileName = file
	d.t.Logf("dhcp: %s to %s arch=%v user-class=%q: yiaddr=%s file=%q",
		typ, mac, req.ClientArch(), req.UserClass(), ip, file)
	dst := peer
	if u, ok := peer.(*net.UDPAddr); !ok || u.IP.IsUnspecified() || req.IsBroadcast() {
		dst = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	}
	if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
		d.t.Logf("dhcp: send to %s: %v", dst, err)
	}
}

// IsIPXE reports whether req comes from iPXE (user class "iPXE").
func IsIPXE(req *dhcpv4.DHCPv4) bool {
	return slices.Contains(req.UserClass(), "iPXE")
}

// IsEFI reports whether req's client architecture (option 93) is x86-64
// UEFI.
func IsEFI(req *dhcpv4.DHCPv4) bool {
	arch := req.ClientArch()
	return slices.Contains(arch, iana.EFI_X86_64) || slices.Contains(arch, iana.EFI_BC)
}
