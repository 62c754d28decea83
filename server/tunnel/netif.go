package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

// netif is the network stack behind the device: sockets on the server's
// tunnel address.
type netif interface {
	listenTCP(ap netip.AddrPort) (net.Listener, error)
	dialTCP(ctx context.Context, local netip.Addr, remote netip.AddrPort) (net.Conn, error)
}

func newNetif(cfg Config, server netip.Addr) (netif, tun.Device, error) {
	if !cfg.UseTUN {
		dev, n, err := netstack.CreateNetTUN([]netip.Addr{server}, nil, cfg.MTU)
		if err != nil {
			return nil, nil, fmt.Errorf("tunnel: netstack: %w", err)
		}
		return stackNet{n}, dev, nil
	}
	dev, err := tun.CreateTUN(cfg.Interface, cfg.MTU)
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel: create TUN %s: %w", cfg.Interface, err)
	}
	if err := configureTUN(cfg.Interface, netip.PrefixFrom(server, cfg.Prefix.Bits())); err != nil {
		dev.Close()
		return nil, nil, err
	}
	return kernelNet{iface: cfg.Interface}, dev, nil
}

func configureTUN(name string, addr netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tunnel: netlink.LinkByName(%s): %w", name, err)
	}
	ipn := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("tunnel: netlink.AddrReplace(%s, %s): %w", name, addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tunnel: netlink.LinkSetUp(%s): %w", name, err)
	}
	return nil
}

// stackNet is the in-process network stack: only WireGuard reaches it.
type stackNet struct{ n *netstack.Net }

func (s stackNet) listenTCP(ap netip.AddrPort) (net.Listener, error) {
	return s.n.ListenTCPAddrPort(ap)
}

func (s stackNet) dialTCP(ctx context.Context, _ netip.Addr, remote netip.AddrPort) (net.Conn, error) {
	return s.n.DialContextTCPAddrPort(ctx, remote)
}

// kernelNet is the host stack; sockets are bound to the TUN interface so
// packets that came in on another interface never reach them.
type kernelNet struct{ iface string }

func (k kernelNet) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, k.iface)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_BINDTODEVICE %s: %w", k.iface, serr)
	}
	return nil
}

func (k kernelNet) listenTCP(ap netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: k.control}
	return lc.Listen(context.Background(), "tcp4", ap.String())
}

func (k kernelNet) dialTCP(ctx context.Context, local netip.Addr, remote netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Control: k.control, LocalAddr: &net.TCPAddr{IP: local.AsSlice()}}
	return d.DialContext(ctx, "tcp4", remote.String())
}
