package netup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoLink is returned by Up when no usable link got a carrier in time.
var ErrNoLink = errors.New("no network link with carrier")

// linkPoll is how often waitLink polls the link list; a NIC appears about
// 0.1 s after its driver loads.
const linkPoll = 100 * time.Millisecond

// waitLink brings up the named link, or every Ethernet device when name is
// "", and returns the first one (by index) with a carrier.
func waitLink(ctx context.Context, h *netlink.Handle, name string) (netlink.Link, error) {
	t := time.NewTicker(linkPoll)
	defer t.Stop()
	var seen []string
	for {
		links, err := h.LinkList()
		if err != nil {
			return nil, fmt.Errorf("netlink: list links: %w", err)
		}
		cands := candidates(links, name)
		seen = seen[:0]
		for _, l := range cands {
			a := l.Attrs()
			seen = append(seen, a.Name)
			if a.RawFlags&unix.IFF_UP == 0 {
				if err := h.LinkSetUp(l); err != nil {
					return nil, fmt.Errorf("netlink: set %s up: %w", a.Name, err)
				}
				continue
			}
			if a.RawFlags&unix.IFF_LOWER_UP != 0 {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			if len(seen) == 0 && name != "" {
				return nil, fmt.Errorf("%w: link %q does not exist", ErrNoLink, name)
			}
			return nil, fmt.Errorf("%w (links tried: %s)", ErrNoLink, strings.Join(seen, ", "))
		case <-t.C:
		}
	}
}

// candidates returns the links worth configuring, sorted by index: the
// named one, or the physical Ethernet devices.
func candidates(links []netlink.Link, name string) []netlink.Link {
	var out []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		switch {
		case name != "":
			if a.Name != name {
				continue
			}
		case l.Type() != "device" || a.EncapType != "ether" || a.RawFlags&unix.IFF_LOOPBACK != 0:
			continue
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Index < out[j].Attrs().Index })
	return out
}
