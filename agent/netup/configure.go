package netup

import (
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
)

// configure moves link from the settings of the previous lease (zero on
// the first one) to s; elapsed is the age of the lease.
func configure(h *netlink.Handle, link netlink.Link, prev, s settings, elapsed time.Duration) error {
	name := link.Attrs().Name
	if s.MTU > 0 && s.MTU != link.Attrs().MTU {
		if err := h.LinkSetMTU(link, s.MTU); err != nil {
			return fmt.Errorf("netlink: set %s mtu %d: %w", name, s.MTU, err)
		}
	}
	addr := &netlink.Addr{IPNet: s.Addr}
	if s.Lease != infinite {
		left := int((s.Lease - elapsed) / time.Second)
		addr.ValidLft, addr.PreferedLft = max(left, 1), max(left, 1)
	}
	if prev.Addr != nil && !prev.Addr.IP.Equal(s.Addr.IP) {
		// The server moved us: drop the old address (and its routes) first;
		// removing a subnet's primary address afterwards would also remove
		// the new, secondary one.
		if err := h.AddrDel(link, &netlink.Addr{IPNet: prev.Addr}); err != nil {
			return fmt.Errorf("netlink: remove old address %s from %s: %w", prev.Addr, name, err)
		}
	}
	if err := h.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("netlink: address %s on %s: %w", s.Addr, name, err)
	}
	for _, r := range s.Routes {
		if err := h.RouteReplace(netlinkRoute(link, s.Addr, r)); err != nil {
			return fmt.Errorf("netlink: route %s on %s: %w", r, name, err)
		}
	}
	return nil
}

// netlinkRoute converts r to a route on link with source addr.
func netlinkRoute(link netlink.Link, addr *net.IPNet, r route) *netlink.Route {
	nr := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: r.Dst, Gw: r.Gw, Src: addr.IP}
	if r.Dst == nil {
		nr.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	switch {
	case r.Gw == nil:
		nr.Scope = netlink.SCOPE_LINK
	case r.OnLink:
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}
