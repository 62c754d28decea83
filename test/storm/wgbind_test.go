package storm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/sealroot/sealroot/test/netnstest"
)

// addrBind is a WireGuard bind whose one UDP socket is bound to the
// machine's own address, as a real machine's socket is: wireguard-go's
// StdNetBind binds the wildcard address, so the hundred machines of one
// namespace would all send from the namespace's first address and share
// the server's per-source-IP handshake rate limit (20/s, burst 5), which
// applies whenever the server is under load.
type addrBind struct {
	ns   *netnstest.NS
	addr netip.Addr
	c    atomic.Pointer[net.UDPConn]
}

// addrEndpoint is a peer's address for addrBind.
type addrEndpoint struct{ dst netip.AddrPort }

func (e addrEndpoint) ClearSrc()           {}
func (e addrEndpoint) SrcToString() string { return "" }
func (e addrEndpoint) DstToString() string { return e.dst.String() }
func (e addrEndpoint) DstToBytes() []byte  { b, _ := e.dst.MarshalBinary(); return b }
func (e addrEndpoint) DstIP() netip.Addr   { return e.dst.Addr() }
func (e addrEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

func (b *addrBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	var c *net.UDPConn
	err := b.ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.addr, port)))
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("wireguard bind %s: %w", b.addr, err)
	}
	b.c.Store(c)
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, from, err := c.ReadFromUDPAddrPort(packets[0])
		if err != nil {
			return 0, err
		}
		sizes[0], eps[0] = n, addrEndpoint{dst: netip.AddrPortFrom(from.Addr().Unmap(), from.Port())}
		return 1, nil
	}
	return []conn.ReceiveFunc{recv}, uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
}

func (b *addrBind) Close() error {
	if c := b.c.Swap(nil); c != nil {
		return c.Close()
	}
	return nil
}

func (b *addrBind) SetMark(uint32) error { return nil }
func (b *addrBind) BatchSize() int       { return 1 }

func (b *addrBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	c := b.c.Load()
	e, ok := ep.(addrEndpoint)
	if c == nil || !ok {
		return net.ErrClosed
	}
	var errs []error
	for _, buf := range bufs {
		if _, err := c.WriteToUDPAddrPort(buf, e.dst); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *addrBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return addrEndpoint{dst: ap}, nil
}

// wgEvents counts what a WireGuard device says about its handshakes (its
// verbose log lines), so that the storm can print why a handshake took
// long: initiations sent (the first and the retransmissions after 5s
// without answer), cookie replies received (the server was under load and
// asked for proof of the address before spending work), and responses.
type wgEvents struct {
	initiations, cookies, responses atomic.Int64
}

func (ev *wgEvents) logger() *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			switch {
			case strings.Contains(format, "Sending handshake initiation"):
				ev.initiations.Add(1)
			case strings.Contains(format, "Receiving cookie response"):
				ev.cookies.Add(1)
			case strings.Contains(format, "Received handshake response"):
				ev.responses.Add(1)
			}
		},
		Errorf: func(string, ...any) {},
	}
}
