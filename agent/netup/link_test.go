package netup

import (
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestCandidates(t *testing.T) {
	attrs := func(name string, index int, flags uint32) netlink.LinkAttrs {
		return netlink.LinkAttrs{Name: name, Index: index, EncapType: "ether", RawFlags: flags}
	}
	lo := attrs("lo", 1, unix.IFF_LOOPBACK)
	lo.EncapType = "loopback"
	links := []netlink.Link{
		&netlink.Device{LinkAttrs: lo},
		&netlink.Device{LinkAttrs: attrs("enp3s0", 3, 0)},
		&netlink.Device{LinkAttrs: attrs("enp2s0", 2, 0)},
		&netlink.Veth{LinkAttrs: attrs("veth0", 4, 0)},
		&netlink.Bridge{LinkAttrs: attrs("br0", 5, 0)},
	}
	names := func(ls []netlink.Link) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Attrs().Name)
		}
		return out
	}
	tests := []struct {
		name, iface string
		want        []string
	}{
		{"physical_by_index", "", []string{"enp2s0", "enp3s0"}},
		{"named_virtual_link", "veth0", []string{"veth0"}},
		{"named_missing", "eth9", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(candidates(links, tt.iface)); !slices.Equal(got, tt.want) {
				t.Errorf("candidates(%q) = %v, want %v", tt.iface, got, tt.want)
			}
		})
	}
}
