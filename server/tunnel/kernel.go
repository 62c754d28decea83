package tunnel

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// engine is the WireGuard implementation behind a Tunnel, spoken to in
// wireguard-go's UAPI text ("set" and "get" operations): the embedded
// wireguard-go device, or the kernel's WireGuard (kernelEngine), which
// translates.
type engine interface {
	IpcSet(uapi string) error
	IpcGet() (string, error)
	Close()
}

// kernelEngine is a kernel WireGuard interface configured over netlink
// (wgctrl). Its packets never leave the kernel: no copy to user space and
// back per packet, and the kernel's own GSO/GRO for TCP over the tunnel.
type kernelEngine struct {
	name   string
	client *wgctrl.Client
}

// newKernelEngine creates the WireGuard interface name with the server
// address addr. It fails (and leaves nothing behind) when the kernel has
// no WireGuard (module not present or not loadable).
func newKernelEngine(name string, mtu int, addr netip.Prefix) (*kernelEngine, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = name, mtu
	if err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: attrs}); err != nil {
		return nil, fmt.Errorf("tunnel: netlink.LinkAdd(wireguard %s): %w", name, err)
	}
	k := &kernelEngine{name: name}
	var err error
	if k.client, err = wgctrl.New(); err != nil {
		k.Close()
		return nil, fmt.Errorf("tunnel: wgctrl.New: %w", err)
	}
	if err := configureTUN(name, addr); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// Close deletes the interface and with it every peer.
func (k *kernelEngine) Close() {
	if k.client != nil {
		k.client.Close()
	}
	if link, err := netlink.LinkByName(k.name); err == nil {
		netlink.LinkDel(link)
	}
}

func (k *kernelEngine) IpcSet(uapi string) error {
	cfg, err := parseUAPISet(uapi)
	if err != nil {
		return err
	}
	if err := k.client.ConfigureDevice(k.name, cfg); err != nil {
		return fmt.Errorf("wgctrl.ConfigureDevice(%s): %w", k.name, err)
	}
	return nil
}

func (k *kernelEngine) IpcGet() (string, error) {
	d, err := k.client.Device(k.name)
	if err != nil {
		return "", fmt.Errorf("wgctrl.Device(%s): %w", k.name, err)
	}
	return formatUAPIGet(d), nil
}

// parseUAPISet parses the UAPI "set" keys Tunnel writes into a wgtypes
// configuration.
func parseUAPISet(uapi string) (wgtypes.Config, error) {
	var cfg wgtypes.Config
	var peer *wgtypes.PeerConfig
	for line := range strings.SplitSeq(strings.TrimSpace(uapi), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return cfg, fmt.Errorf("uapi line %q: no '='", line)
		}
		if k == "public_key" {
			key, err := hexToKey(v)
			if err != nil {
				return cfg, err
			}
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: key})
			peer = &cfg.Peers[len(cfg.Peers)-1]
			continue
		}
		if peer == nil {
			if err := setDeviceKey(&cfg, k, v); err != nil {
				return cfg, err
			}
			continue
		}
		if err := setPeerKey(peer, k, v); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func setDeviceKey(cfg *wgtypes.Config, k, v string) error {
	switch k {
	case "private_key":
		key, err := hexToKey(v)
		if err != nil {
			return err
		}
		cfg.PrivateKey = &key
	case "listen_port":
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return fmt.Errorf("uapi listen_port %q: %w", v, err)
		}
		port := int(p)
		cfg.ListenPort = &port
	case "replace_peers":
		cfg.ReplacePeers = v == "true"
	default:
		return fmt.Errorf("uapi: unsupported device key %q", k)
	}
	return nil
}

func setPeerKey(p *wgtypes.PeerConfig, k, v string) error {
	switch k {
	case "remove":
		p.Remove = v == "true"
	case "replace_allowed_ips":
		p.ReplaceAllowedIPs = v == "true"
	case "allowed_ip":
		_, ipn, err := net.ParseCIDR(v)
		if err != nil {
			return fmt.Errorf("uapi allowed_ip %q: %w", v, err)
		}
		p.AllowedIPs = append(p.AllowedIPs, *ipn)
	case "persistent_keepalive_interval":
		s, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return fmt.Errorf("uapi persistent_keepalive_interval %q: %w", v, err)
		}
		d := time.Duration(s) * time.Second
		p.PersistentKeepaliveInterval = &d
	case "endpoint":
		ap, err := netip.ParseAddrPort(v)
		if err != nil {
			return fmt.Errorf("uapi endpoint %q: %w", v, err)
		}
		p.Endpoint = net.UDPAddrFromAddrPort(ap)
	default:
		return fmt.Errorf("uapi: unsupported peer key %q", k)
	}
	return nil
}

func hexToKey(v string) (wgtypes.Key, error) {
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != wgtypes.KeyLen {
		return wgtypes.Key{}, errors.New("uapi: malformed key")
	}
	return wgtypes.Key(b), nil
}

// formatUAPIGet writes d as a UAPI "get" answer, with the keys Tunnel
// reads (never the private key).
func formatUAPIGet(d *wgtypes.Device) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen_port=%d\n", d.ListenPort)
	for _, p := range d.Peers {
		fmt.Fprintf(&b, "public_key=%s\n", hexKey(p.PublicKey[:]))
		if p.Endpoint != nil {
			ap := p.Endpoint.AddrPort()
			fmt.Fprintf(&b, "endpoint=%s\n", netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
		if !p.LastHandshakeTime.IsZero() {
			fmt.Fprintf(&b, "last_handshake_time_sec=%d\nlast_handshake_time_nsec=%d\n",
				p.LastHandshakeTime.Unix(), p.LastHandshakeTime.Nanosecond())
		}
		fmt.Fprintf(&b, "rx_bytes=%d\ntx_bytes=%d\n", p.ReceiveBytes, p.TransmitBytes)
		for _, ipn := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", ipn.String())
		}
	}
	return b.String()
}
