package tunnel

import "golang.zx2c4.com/wireguard/tun"

// pinnedTUN hides link up/down events from wireguard-go, so the device goes
// up only when the Tunnel says so: on the caller's thread, whose network
// namespace the UDP socket then belongs to. (wireguard-go would otherwise
// reopen its socket from whatever thread handles a link event.)
type pinnedTUN struct {
	tun.Device
	events chan tun.Event
}

func pinTUN(d tun.Device) *pinnedTUN {
	p := &pinnedTUN{Device: d, events: make(chan tun.Event, 4)}
	go func() {
		defer close(p.events)
		for e := range d.Events() {
			if e &^= tun.EventUp | tun.EventDown; e != 0 {
				p.events <- e
			}
		}
	}()
	return p
}

func (p *pinnedTUN) Events() <-chan tun.Event { return p.events }
