package tunnel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"sync"
)

// allocation is one machine's tunnel address, current peer key (nil
// when no peer is installed) and the UDP endpoint its last handshake came
// from (the zero value when unknown).
type allocation struct {
	Addr     netip.Addr     `json:"addr"`
	Key      []byte         `json:"key,omitempty"`
	Endpoint netip.AddrPort `json:"endpoint,omitzero"`
}

// stateFile is the JSON layout of Config.StatePath.
type stateFile struct {
	Version  int                    `json:"version"`
	Prefix   string                 `json:"prefix"`
	Machines map[string]*allocation `json:"machines"`
}

const stateVersion = 1

// allocator assigns stable addresses in a prefix. Not safe for concurrent
// use: Tunnel.mu guards it, except writeMu and written.
type allocator struct {
	path     string
	prefix   netip.Prefix
	machines map[string]*allocation
	used     map[netip.Addr]string
	gen      uint64 // bumped by every change the state file must get

	writeMu sync.Mutex // serialises state file writes (Tunnel.commit); taken before Tunnel.mu
	written uint64     // guarded by writeMu: the generation the state file holds
}

func loadAllocator(path string, prefix netip.Prefix) (*allocator, error) {
	a := &allocator{path: path, prefix: prefix, machines: map[string]*allocation{}, used: map[netip.Addr]string{}}
	if path == "" {
		return a, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tunnel: read state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("tunnel: parse state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("tunnel: state %s has version %d, want %d", path, st.Version, stateVersion)
	}
	if st.Prefix != prefix.String() {
		return nil, fmt.Errorf("tunnel: state %s is for prefix %s, configured %s: move it away to renumber", path, st.Prefix, prefix)
	}
	for id, al := range st.Machines {
		if al == nil || !a.usable(al.Addr) || a.used[al.Addr] != "" || (al.Key != nil && len(al.Key) != 32) {
			return nil, fmt.Errorf("tunnel: state %s: bad entry for machine %s", path, id)
		}
		a.machines[id] = al
		a.used[al.Addr] = id
	}
	return a, nil
}

// usable reports whether ip is a machine address: in the prefix, not the
// network, server or broadcast address.
func (a *allocator) usable(ip netip.Addr) bool {
	first := a.prefix.Addr()
	return a.prefix.Contains(ip) && ip != first && ip != first.Next() && a.prefix.Contains(ip.Next())
}

func (a *allocator) get(id string) (allocation, bool) {
	al, ok := a.machines[id]
	if !ok {
		return allocation{}, false
	}
	return *al, true
}

func (a *allocator) all() map[string]allocation {
	out := make(map[string]allocation, len(a.machines))
	for id, al := range a.machines {
		out[id] = *al
	}
	return out
}

func (a *allocator) byAddr(ip netip.Addr) (string, bool) {
	id, ok := a.used[ip]
	return id, ok
}

func (a *allocator) keyOwner(key []byte) (string, bool) {
	for id, al := range a.machines {
		if bytes.Equal(al.Key, key) {
			return id, true
		}
	}
	return "", false
}

// assign records key for id, allocating its address on first use, and
// persists the result.
func (a *allocator) assign(id string, key []byte) (netip.Addr, error) {
	al, ok := a.machines[id]
	if !ok {
		ip, err := a.free(id)
		if err != nil {
			return netip.Addr{}, err
		}
		al = &allocation{Addr: ip}
		a.machines[id] = al
		a.used[ip] = id
	}
	if !bytes.Equal(al.Key, key) {
		al.Key, al.Endpoint = bytes.Clone(key), netip.AddrPort{}
	}
	a.gen++
	return al.Addr, nil
}

func (a *allocator) clearKey(id string) {
	if al, ok := a.machines[id]; ok {
		al.Key, al.Endpoint = nil, netip.AddrPort{}
	}
	a.gen++
}

// setEndpoints records the endpoints of the peers with the given keys
// and reports whether any changed.
func (a *allocator) setEndpoints(byKey map[string]netip.AddrPort) bool {
	changed := false
	for _, al := range a.machines {
		if ep, ok := byKey[string(al.Key)]; ok && al.Key != nil && ep != al.Endpoint {
			al.Endpoint, changed = ep, true
		}
	}
	if changed {
		a.gen++
	}
	return changed
}

// free returns the first unused address at or after id's hash position.
func (a *allocator) free(id string) (netip.Addr, error) {
	hosts := uint64(1)<<(32-a.prefix.Bits()) - 3 // minus network, server, broadcast
	sum := sha256.Sum256([]byte(id))
	start := binary.BigEndian.Uint64(sum[:8]) % hosts
	base := a.prefix.Addr().As4()
	for i := uint64(0); i < hosts; i++ {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(base[:])+uint32((start+i)%hosts+2))
		ip := netip.AddrFrom4(b)
		if _, taken := a.used[ip]; !taken {
			return ip, nil
		}
	}
	return netip.Addr{}, ErrFull
}

// encode is the state file's content and the generation it holds.
func (a *allocator) encode() ([]byte, uint64, error) {
	raw, err := json.MarshalIndent(&stateFile{Version: stateVersion, Prefix: a.prefix.String(), Machines: a.machines}, "", "  ")
	if err != nil {
		return nil, 0, fmt.Errorf("tunnel: encode state: %w", err)
	}
	return append(raw, '\n'), a.gen, nil
}
