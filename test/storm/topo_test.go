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
}

// machineAddr is machine i's address: 10.77.(k+1).(j+1) for the j-th
// machine of namespace k.
func machineAddr(i int) netip.Addr {
	k, j := i/perNS, i%perNS
	return netip.AddrFrom4([4]byte{10, 77, byte(k + 1), byte(j + 1)})
}

func newTopo(t testing.TB, machines int) *topo {
	t.Helper()
	tag := fmt.Sprintf("storm%d", os.Getpid())
	tp := &topo{server: netnstest.New(t, tag+"s")}
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
