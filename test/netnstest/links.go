package netnstest

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// AddBridge creates the bridge name in the namespace, gives it addr (if
// valid) and sets it up.
func (n *NS) AddBridge(name string, addr netip.Prefix) error {
	return n.Do(func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("netlink.LinkAdd(bridge %s): %w", name, err)
		}
		return addrUp(br, addr)
	})
}

// AddTap creates a persistent tap device name in the namespace (no packet
// info header, vnet header allowed, as QEMU opens it), enslaves it to bridge
// (if not empty) and sets it up. QEMU must run in the namespace to open it
// by name (`-netdev tap,ifname=name,script=no,downscript=no`).
func (n *NS) AddTap(name, bridge string) error {
	return n.Do(func() error {
		tap := &netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: name},
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE,
		}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("netlink.LinkAdd(tap %s): %w", name, err)
		}
		for _, f := range tap.Fds {
			f.Close() // the device persists without them
		}
		if err := setMaster(tap, bridge); err != nil {
			return err
		}
		return addrUp(tap, netip.Prefix{})
	})
}

// AddVeth creates a veth pair: name in n, enslaved to bridge (if not empty),
// and peerName moved into peer with peerAddr (if valid). Both ends are up.
func (n *NS) AddVeth(name, bridge string, peer *NS, peerName string, peerAddr netip.Prefix) error {
	err := n.Do(func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peerName}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("netlink.LinkAdd(veth %s/%s): %w", name, peerName, err)
		}
		if err := setMaster(veth, bridge); err != nil {
			return err
		}
		if err := addrUp(veth, netip.Prefix{}); err != nil {
			return err
		}
		return peer.MoveLink(peerName)
	})
	if err != nil {
		return err
	}
	return peer.Do(func() error {
		p, err := netlink.LinkByName(peerName)
		if err != nil {
			return fmt.Errorf("netlink.LinkByName(%s): %w", peerName, err)
		}
		return addrUp(p, peerAddr)
	})
}

// MoveLink moves the link name, found in the calling thread's
// namespace, into n.
func (n *NS) MoveLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netlink.LinkByName(%s): %w", name, err)
	}
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		return fmt.Errorf("netns.GetFromPath(%s): %w", n.Path, err)
	}
	defer h.Close()
	if err := netlink.LinkSetNsFd(l, int(h)); err != nil {
		return fmt.Errorf("netlink.LinkSetNsFd(%s, %s): %w", name, n.Name, err)
	}
	return nil
}

func setMaster(l netlink.Link, bridge string) error {
	if bridge == "" {
		return nil
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("netlink.LinkByName(%s): %w", bridge, err)
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("netlink.LinkSetMaster(%s, %s): %w", l.Attrs().Name, bridge, err)
	}
	return nil
}

func addrUp(l netlink.Link, addr netip.Prefix) error {
	name := l.Attrs().Name
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: prefixNet(addr)}
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("netlink.AddrAdd(%s, %s): %w", name, addr, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("netlink.LinkSetUp(%s): %w", name, err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	bits := p.Addr().BitLen()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// AddAddr gives the link named link the address p. It acts in the calling
// thread's namespace: call it inside Do.
func AddAddr(link string, p netip.Prefix) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netlink.LinkByName(%s): %w", link, err)
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(p)}); err != nil {
		return fmt.Errorf("netlink.AddrAdd(%s, %s): %w", link, p, err)
	}
	return nil
}

// AddRoute routes dst via gw over the link named link, in the calling
// thread's namespace: call it inside Do.
func AddRoute(link string, dst netip.Prefix, gw netip.Addr) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netlink.LinkByName(%s): %w", link, err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(), Dst: prefixNet(dst)}
	if err := netlink.RouteAdd(r); err != nil {
		return fmt.Errorf("netlink.RouteAdd(%s via %s): %w", dst, gw, err)
	}
	return nil
}

// DelAddr removes the address p from the link named link, in the calling
// thread's namespace: call it inside Do.
func DelAddr(link string, p netip.Prefix) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netlink.LinkByName(%s): %w", link, err)
	}
	if err := netlink.AddrDel(l, &netlink.Addr{IPNet: prefixNet(p)}); err != nil {
		return fmt.Errorf("netlink.AddrDel(%s, %s): %w", link, p, err)
	}
	return nil
}
