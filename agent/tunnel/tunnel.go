// Package tunnel brings up the agent's end of the protected root link: a
// kernel WireGuard interface configured over netlink (wgctrl), so nothing
// has to keep running in userspace for the tunnel after switch_root.
//
// The agent makes a fresh key pair every boot ([NewKey], after the CRNG is
// seeded) and sends the public key in its attestation Hello; the sealed
// credential returns a wire.TunnelPlan, which [Compute] turns into the
// device configuration and [Up] applies. The only peer is the server, and
// only the server's tunnel address is routed through it.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sealroot/sealroot/wire"
)

// LinkName is the agent's WireGuard interface.
const LinkName = "wg0"

// Keepalive is the agent's persistent keepalive towards the server.
const Keepalive = 10 * time.Second

// ErrPlan is a tunnel plan the agent cannot apply.
var ErrPlan = errors.New("tunnel: invalid tunnel plan")

// NewKey returns a fresh private key. It reads crypto/rand, so call it
// only once the CRNG is seeded.
func NewKey() (wgtypes.Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("tunnel: generate key: %w", err)
	}
	return k, nil
}

// Settings is what Up configures: the WireGuard device and the addresses.
type Settings struct {
	Device     wgtypes.Config
	Address    netip.Prefix // the machine's address, with the tunnel prefix length
	ServerAddr netip.Addr   // routed through the link, /32
}

// Compute turns a plan and the boot's private key into Settings. It is a
// pure function.
func Compute(plan *wire.TunnelPlan, priv wgtypes.Key) (*Settings, error) {
	if plan == nil {
		return nil, fmt.Errorf("%w: none", ErrPlan)
	}
	server, err := wgtypes.NewKey(plan.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("%w: server key: %w", ErrPlan, err)
	}
	ep, err := netip.ParseAddrPort(plan.Endpoint)
	if err != nil || !ep.Addr().Is4() || ep.Port() == 0 {
		return nil, fmt.Errorf("%w: endpoint %q: want ipv4:port", ErrPlan, plan.Endpoint)
	}
	addr, err := netip.ParsePrefix(plan.Address)
	if err != nil || !addr.Addr().Is4() {
		return nil, fmt.Errorf("%w: address %q", ErrPlan, plan.Address)
	}
	srv, err := netip.ParseAddr(plan.ServerAddr)
	if err != nil || !srv.Is4() || srv == addr.Addr() {
		return nil, fmt.Errorf("%w: server address %q", ErrPlan, plan.ServerAddr)
	}
	keepalive := Keepalive
	return &Settings{
		Device: wgtypes.Config{
			PrivateKey:   &priv,
			ReplacePeers: true,
			Peers: []wgtypes.PeerConfig{{
				PublicKey:                   server,
				Endpoint:                    net.UDPAddrFromAddrPort(ep),
				PersistentKeepaliveInterval: &keepalive,
				ReplaceAllowedIPs:           true,
				AllowedIPs:                  []net.IPNet{hostNet(srv)},
			}},
		},
		Address:    addr,
		ServerAddr: srv,
	}, nil
}

func hostNet(a netip.Addr) net.IPNet {
	return net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// Up creates the kernel WireGuard link LinkName (the wireguard module must
// be loaded) and configures it from plan.
func Up(ctx context.Context, plan *wire.TunnelPlan, priv wgtypes.Key) error {
	s, err := Compute(plan, priv)
	if err != nil {
		return err
	}
	err = netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: LinkName}})
	if err != nil {
		return fmt.Errorf("tunnel: netlink.LinkAdd(wireguard %s): %w", LinkName, err)
	}
	return Configure(ctx, LinkName, s)
}

// Configure applies s to the existing WireGuard link name: keys and peer
// via wgctrl, then the address, link up and the route to the server.
func Configure(ctx context.Context, name string, s *Settings) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	wg, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("tunnel: wgctrl.New: %w", err)
	}
	defer wg.Close()
	if err := wg.ConfigureDevice(name, s.Device); err != nil {
		return fmt.Errorf("tunnel: configure %s: %w", name, err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tunnel: netlink.LinkByName(%s): %w", name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: s.Address.Addr().AsSlice(), Mask: net.CIDRMask(s.Address.Bits(), 32)}}
	if err := netlink.AddrReplace(link, a); err != nil {
		return fmt.Errorf("tunnel: netlink.AddrReplace(%s, %s): %w", name, s.Address, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tunnel: netlink.LinkSetUp(%s): %w", name, err)
	}
	dst := hostNet(s.ServerAddr)
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &dst, Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("tunnel: route %s via %s: %w", s.ServerAddr, name, err)
	}
	return nil
}
