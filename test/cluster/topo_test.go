package cluster

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sealroot/sealroot/test/netnstest"
)

// topo is the test's network: two server namespaces, each linked to the
// host (where etcd listens on etcdIP), to the machine's namespace and to
// each other (where each serves its bases to the other).
//
//	host 10.83.H.1 (etcd) ── 10.83.H.2 A 10.83.3.1 ── 10.83.3.2 machine
//	host 10.83.H.5        ── 10.83.H.6 B 10.83.4.1 ── 10.83.4.2 machine
//	                         10.83.5.1 A ── 10.83.5.2 B
//
// H is a third octet no address of the host uses (hostOctet), so that
// runs of the test at once (the host namespace is shared) do not answer
// each other's servers.
type topo struct {
	a, b, machine *netnstest.NS
	etcdIP        netip.Addr // where etcd listens, in the host
}

// Addresses of topo inside its namespaces. The servers listen for
// attestations on attestA and attestB, serve their bases to each other
// on basesA and basesB, and B serves iSCSI roots to the machine on
// iscsiB.
var (
	attestA = netip.AddrPortFrom(netip.MustParseAddr("10.83.3.1"), 4433)
	attestB = netip.AddrPortFrom(netip.MustParseAddr("10.83.4.1"), 4433)
	iscsiB  = netip.AddrPortFrom(netip.MustParseAddr("10.83.4.1"), 3260)
	basesA  = netip.AddrPortFrom(netip.MustParseAddr("10.83.5.1"), 9478)
	basesB  = netip.AddrPortFrom(netip.MustParseAddr("10.83.5.2"), 9478)
)

func newTopo(t *testing.T) *topo {
	t.Helper()
	tag := fmt.Sprintf("cluster%d", os.Getpid())
	tp := &topo{a: netnstest.New(t, tag+"a"), b: netnstest.New(t, tag+"b"), machine: netnstest.New(t, tag+"m")}
	h, err := hostOctet()
	if err != nil {
		t.Fatal(err)
	}
	tp.etcdIP = pfx(10, 83, h, 1).Addr()
	// Host links: uniquely named, since the host namespace is shared.
	// Both ends are created in the host: named uniquely there.
	hostEnd := func(srv *netnstest.NS, name string, hostAddr, srvAddr netip.Prefix) (srvLink string) {
		t.Helper()
		hostLink := fmt.Sprintf("cl%d%s", os.Getpid(), name)
		srvLink = hostLink + "s"
		if err := hostVeth(hostLink, hostAddr, srv, srvLink); err != nil {
			t.Fatal(err)
		}
		if err := srv.Do(func() error { return addAddrUp(srvLink, srvAddr) }); err != nil {
			t.Fatal(err)
		}
		return srvLink
	}
	hostEnd(tp.a, "a", pfx(10, 83, h, 1), pfx(10, 83, h, 2))
	bLink := hostEnd(tp.b, "b", pfx(10, 83, h, 5), pfx(10, 83, h, 6))
	// B reaches etcd on A's host link through its own.
	if err := tp.b.Do(func() error {
		return netnstest.AddRoute(bLink, netip.PrefixFrom(tp.etcdIP, 32), pfx(10, 83, h, 5).Addr())
	}); err != nil {
		t.Fatal(err)
	}
	if err := tp.a.AddVeth("eth1", "", tp.machine, "ea", pfx(10, 83, 3, 2)); err != nil {
		t.Fatal(err)
	}
	if err := tp.a.Do(func() error { return netnstest.AddAddr("eth1", pfx(10, 83, 3, 1)) }); err != nil {
		t.Fatal(err)
	}
	if err := tp.b.AddVeth("eth1", "", tp.machine, "eb", pfx(10, 83, 4, 2)); err != nil {
		t.Fatal(err)
	}
	if err := tp.b.Do(func() error { return netnstest.AddAddr("eth1", pfx(10, 83, 4, 1)) }); err != nil {
		t.Fatal(err)
	}
	if err := tp.a.AddVeth("tob", "", tp.b, "toa", pfx(10, 83, 5, 2)); err != nil {
		t.Fatal(err)
	}
	if err := tp.a.Do(func() error { return netnstest.AddAddr("tob", pfx(10, 83, 5, 1)) }); err != nil {
		t.Fatal(err)
	}
	return tp
}

// hostOctet picks the third octet of the host links' 10.83.H.0/29: one
// no address of the host is in, starting from one the process ID picks.
func hostOctet() (byte, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("netlink.AddrList: %w", err)
	}
	used := map[byte]bool{}
	for _, a := range addrs {
		if ip := a.IP.To4(); ip != nil && ip[0] == 10 && ip[1] == 83 {
			used[ip[2]] = true
		}
	}
	const first, n = 100, 150
	for i := range n {
		if h := byte(first + (os.Getpid()+i)%n); !used[h] {
			return h, nil
		}
	}
	return 0, fmt.Errorf("no free 10.83.H.0/29 among 10.83.%d-%d on the host", first, first+n-1)
}

// pfx is a.b.c.d/30.
func pfx(a, b, c, d byte) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{a, b, c, d}), 30)
}

// hostVeth creates a veth pair in the test's own namespace: name, with
// addr and up, and peerName moved into peer. The pair goes when peer is
// removed.
func hostVeth(name string, addr netip.Prefix, peer *netnstest.NS, peerName string) error {
	// A locked thread that never joined a namespace: the host's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peerName}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("netlink.LinkAdd(veth %s/%s): %w", name, peerName, err)
	}
	if err := peer.MoveLink(peerName); err != nil {
		return err
	}
	return addAddrUp(name, addr)
}

// addAddrUp gives link addr and sets it up.
func addAddrUp(link string, p netip.Prefix) error {
	if err := netnstest.AddAddr(link, p); err != nil {
		return err
	}
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netlink.LinkByName(%s): %w", link, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("netlink.LinkSetUp(%s): %w", link, err)
	}
	return nil
}
