package storm

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/sealroot/sealroot/test/netnstest"
)

// perNS is how many machines share a client namespace (each with its own
// address on the namespace's veth).
const perNS = 100

// serverIP is the server's address, on the loopback of its namespace;
// every client namespace reaches it through its own veth, routed (not
// bridged), so that the server keeps one neighbour entry per namespace,
// not one per machine.
var serverIP = netip.MustParseAddr("10.77.0.1")

// topo is the storm's network: a server namespace and the client
// namespaces, each link uniquely named per process (/run/netns is shared).
type topo struct {
	server  *netnstest.NS
	clients []*netnstest.NS
	links   []*dhcpLink // per client namespace, with DHCP (proxy or full) only
	size    int         // machines
	mode    dhcpMode
}

// With DHCP (proxy or full) the client namespaces share one Ethernet
// segment with the server (a bridge in its namespace, serverIP on it,
// dhcpBridge), as DHCP broadcasts need; each namespace's eth0 has
// linkAddr (outside the pool) and its machines add the addresses they
// lease (full), or have their fixed ones, machineAddr (proxy).
const (
	dhcpBridge = "stbr"
	dhcpBits   = 16
)

// poolStart is the first address of the full-DHCP pool; the pool holds
// exactly as many addresses as the storm has machines.
var poolStart = netip.MustParseAddr("10.77.1.1")

// linkAddr is client namespace k's own address in full-DHCP mode.
func linkAddr(k int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 250, byte(k + 1)}) }

// poolEnd is the last address of a pool of n addresses from poolStart.
func poolEnd(n int) netip.Addr {
	a := poolStart
	for range n - 1 {
		a = a.Next()
	}
	return a
}

// probeAddr is an address in client namespace k to test the server from.
func (tp *topo) probeAddr(k int) netip.Addr {
	if tp.mode == modeFull {
		return linkAddr(k)
	}
	return machineAddr(k * perNS)
}

// machineAddr is machine i's address: 10.77.(k+1).(j+1) for the j-th
// machine of namespace k.
func machineAddr(i int) netip.Addr {
	k, j := i/perNS, i%perNS
	return netip.AddrFrom4([4]byte{10, 77, byte(k + 1), byte(j + 1)})
}

func newTopo(t testing.TB, machines int, mode dhcpMode) *topo {
	t.Helper()
	if mode != modeNone {
		return newBridgedTopo(t, machines, mode)
	}
	tag := fmt.Sprintf("storm%d", os.Getpid())
	tp := &topo{server: netnstest.New(t, tag+"s"), size: machines, mode: mode}
	if err := tp.server.Do(func() error { return netnstest.AddAddr("lo", netip.PrefixFrom(serverIP, 32)) }); err != nil {
		t.Fatal(err)
	}
	for k := 0; k*perNS < machines; k++ {
		c := netnstest.New(t, fmt.Sprintf("%sc%d", tag, k))
		// Link net 10.78.k.0/30: .1 the server's end, .2 the client's.
		srvEnd := netip.AddrFrom4([4]byte{10, 78, byte(k), 1})
		cliEnd := netip.AddrFrom4([4]byte{10, 78, byte(k), 2})
		sv := fmt.Sprintf("sv%d", k)
		if err := tp.server.AddVeth(sv, "", c, "eth0", netip.PrefixFrom(cliEnd, 30)); err != nil {
			t.Fatal(err)
		}
		err := tp.server.Do(func() error {
			if err := netnstest.AddAddr(sv, netip.PrefixFrom(srvEnd, 30)); err != nil {
				return err
			}
			return netnstest.AddRoute(sv, netip.PrefixFrom(machineAddr(k*perNS), 24).Masked(), cliEnd)
		})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Do(func() error {
			for j := range min(perNS, machines-k*perNS) {
				if err := netnstest.AddAddr("eth0", netip.PrefixFrom(machineAddr(k*perNS+j), 32)); err != nil {
					return err
				}
			}
			return netnstest.AddRoute("eth0", netip.PrefixFrom(serverIP, 32), srvEnd)
		})
		if err != nil {
			t.Fatal(err)
		}
		tp.clients = append(tp.clients, c)
	}
	return tp
}

// nsOf is the namespace of machine i.
func (tp *topo) nsOf(i int) *netnstest.NS { return tp.clients[i/perNS] }

// newBridgedTopo is the DHCP topology: one bridge in the server's
// namespace, a veth from it to each client namespace, and a DHCP client
// socket per namespace; in proxy mode each namespace's eth0 also has its
// machines' fixed addresses.
func newBridgedTopo(t testing.TB, machines int, mode dhcpMode) *topo {
	tag := fmt.Sprintf("storm%d", os.Getpid())
	tp := &topo{server: netnstest.New(t, tag+"s"), size: machines, mode: mode}
	// The server keeps one neighbour entry per machine here; the kernel's
	// table limits (gc_thresh3, 1024 by default) are global, not per
	// namespace, so they are left as the host has them.
	if err := tp.server.AddBridge(dhcpBridge, netip.PrefixFrom(serverIP, dhcpBits)); err != nil {
		t.Fatal(err)
	}
	for k := 0; k*perNS < machines; k++ {
		c := netnstest.New(t, fmt.Sprintf("%sc%d", tag, k))
		if err := tp.server.AddVeth(fmt.Sprintf("sv%d", k), dhcpBridge, c, "eth0", netip.PrefixFrom(linkAddr(k), dhcpBits)); err != nil {
			t.Fatal(err)
		}
		if mode == modeProxy {
			err := c.Do(func() error {
				for j := range min(perNS, machines-k*perNS) {
					if err := netnstest.AddAddr("eth0", netip.PrefixFrom(machineAddr(k*perNS+j), 32)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		l, err := newDHCPLink(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.close)
		tp.clients = append(tp.clients, c)
		tp.links = append(tp.links, l)
	}
	return tp
}

// linkOf is machine i's DHCP socket (nil without DHCP).
func (tp *topo) linkOf(i int) *dhcpLink {
	if tp.links == nil {
		return nil
	}
	return tp.links[i/perNS]
}
