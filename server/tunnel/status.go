package tunnel

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PeerStatus is the device's view of one machine's peer.
type PeerStatus struct {
	LastHandshake time.Time // zero: no handshake yet
	RxBytes       int64
	TxBytes       int64
}

// PeerEndpoint returns the UDP endpoint machineID's installed peer last
// handshaked from; ok is false when it has none (yet).
func (t *Tunnel) PeerEndpoint(machineID string) (ep netip.AddrPort, ok bool, err error) {
	t.mu.Lock()
	a, found := t.alloc.get(machineID)
	t.mu.Unlock()
	if !found || a.Key == nil {
		return netip.AddrPort{}, false, nil
	}
	peers, err := t.devicePeers()
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	p, ok := peers[string(a.Key)]
	return p.Endpoint, ok && p.Endpoint.IsValid(), nil
}

// Status returns the status of machineID's installed peer; ok is false
// when it has none.
func (t *Tunnel) Status(machineID string) (st PeerStatus, ok bool, err error) {
	t.mu.Lock()
	a, found := t.alloc.get(machineID)
	t.mu.Unlock()
	if !found || a.Key == nil {
		return PeerStatus{}, false, nil
	}
	peers, err := t.devicePeers()
	if err != nil {
		return PeerStatus{}, false, err
	}
	p, ok := peers[string(a.Key)]
	return p.PeerStatus, ok, nil
}

// devicePeer is the device's view of one peer.
type devicePeer struct {
	PeerStatus
	Endpoint netip.AddrPort // zero until the peer's first handshake
}

// devicePeers reads every peer's state from the device, by public key.
func (t *Tunnel) devicePeers() (map[string]devicePeer, error) {
	get, err := t.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("tunnel: read device: %w", err)
	}
	return parsePeers(get), nil
}

// parsePeers parses the peer sections of a UAPI "get" answer.
func parsePeers(uapi string) map[string]devicePeer {
	peers := map[string]devicePeer{}
	var key string
	var p devicePeer
	var sec, nsec int64
	flush := func() {
		if key == "" {
			return
		}
		if sec != 0 || nsec != 0 {
			p.LastHandshake = time.Unix(sec, nsec)
		}
		peers[key] = p
	}
	for _, line := range strings.Split(uapi, "\n") {
		k, v, _ := strings.Cut(line, "=")
		if k == "public_key" {
			flush()
			b, _ := hex.DecodeString(v)
			key, p, sec, nsec = string(b), devicePeer{}, 0, 0
			continue
		}
		if key == "" {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "endpoint":
			p.Endpoint, _ = netip.ParseAddrPort(v)
		case "last_handshake_time_sec":
			sec = n
		case "last_handshake_time_nsec":
			nsec = n
		case "rx_bytes":
			p.RxBytes = n
		case "tx_bytes":
			p.TxBytes = n
		}
	}
	flush()
	return peers
}

// hasDevicePeer reports whether the device has a peer with key (tests).
func (t *Tunnel) hasDevicePeer(key []byte) bool {
	get, err := t.dev.IpcGet()
	return err == nil && strings.Contains(get, "public_key="+hexKey(key)+"\n")
}

// PeerInfo is one installed peer: the machine, its tunnel address and
// the device's view (endpoint, last handshake, bytes).
type PeerInfo struct {
	MachineID string
	Addr      netip.Addr
	Endpoint  netip.AddrPort // zero until the peer's first handshake
	PeerStatus
}

// PeerList returns every installed peer, sorted by tunnel address.
func (t *Tunnel) PeerList() ([]PeerInfo, error) {
	t.mu.Lock()
	all := t.alloc.all()
	t.mu.Unlock()
	peers, err := t.devicePeers()
	if err != nil {
		return nil, err
	}
	var out []PeerInfo
	for id, a := range all {
		if a.Key == nil {
			continue
		}
		p := PeerInfo{MachineID: id, Addr: a.Addr}
		if dp, ok := peers[string(a.Key)]; ok {
			p.Endpoint, p.PeerStatus = dp.Endpoint, dp.PeerStatus
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return a.Addr.Compare(b.Addr) })
	return out, nil
}
