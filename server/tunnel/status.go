package tunnel

import (
	"fmt"
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

// Status returns the status of machineID's installed peer; ok is false
// when it has none.
func (t *Tunnel) Status(machineID string) (st PeerStatus, ok bool, err error) {
	t.mu.Lock()
	a, found := t.alloc.get(machineID)
	t.mu.Unlock()
	if !found || a.Key == nil {
		return PeerStatus{}, false, nil
	}
	get, err := t.dev.IpcGet()
	if err != nil {
		return PeerStatus{}, false, fmt.Errorf("tunnel: read device: %w", err)
	}
	want := hexKey(a.Key)
	var sec, nsec int64
	in := false
	for _, line := range strings.Split(get, "\n") {
		k, v, _ := strings.Cut(line, "=")
		if k == "public_key" {
			if in {
				break
			}
			in = v == want
			ok = ok || in
			continue
		}
		if !in {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "last_handshake_time_sec":
			sec = n
		case "last_handshake_time_nsec":
			nsec = n
		case "rx_bytes":
			st.RxBytes = n
		case "tx_bytes":
			st.TxBytes = n
		}
	}
	if sec != 0 || nsec != 0 {
		st.LastHandshake = time.Unix(sec, nsec)
	}
	return st, ok, nil
}

// hasDevicePeer reports whether the device has a peer with key (tests).
func (t *Tunnel) hasDevicePeer(key []byte) bool {
	get, err := t.dev.IpcGet()
	return err == nil && strings.Contains(get, "public_key="+hexKey(key)+"\n")
}
