package attest

import (
	"container/list"
	"sync"

	"github.com/sealroot/sealroot/server/attest/evidence"
)

// maxCachedKeys bounds a Server's keyCache: about 2 KB a machine (an
// RSA-2048 EK's public area, public key and encapsulation key, a P-256 AK,
// the bytes they were parsed from), so 11 MB at most. Past it the least
// recently used machine's keys go.
const maxCachedKeys = 5000

// keyCache keeps, per machine, its EK and AK as evidence.ParseKeys checked
// and decoded them, so an attestation of a machine seen before neither
// parses the public areas nor rebuilds the public keys. An entry answers
// only a Hello whose EK and AK bytes are exactly those it was parsed from:
// a machine that comes with another AK (a new one after a TPM clear) is
// parsed afresh and its entry replaced. Only keys that parsed are kept, so
// a bad public area is refused every time.
//
// It is safe for concurrent use.
type keyCache struct {
	max int

	mu  sync.Mutex               // guards the fields below
	m   map[string]*list.Element // by machine ID; values hold *cachedKeys
	lru list.List                // of *cachedKeys, most recently used first
}

type cachedKeys struct {
	machineID string
	keys      *evidence.Keys
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, m: make(map[string]*list.Element)}
}

// parse returns evidence.ParseKeys(ekPublic, akPublic) for the machine
// machineID, the SHA-256 of ekPublic, from the cache when it holds the
// keys of exactly these bytes.
func (c *keyCache) parse(machineID string, ekPublic, akPublic []byte) (*evidence.Keys, error) {
	if k := c.get(machineID, ekPublic, akPublic); k != nil {
		return k, nil
	}
	k, err := evidence.ParseKeys(ekPublic, akPublic)
	if err != nil {
		return nil, err
	}
	c.put(machineID, k)
	return k, nil
}

func (c *keyCache) get(machineID string, ekPublic, akPublic []byte) *evidence.Keys {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[machineID]
	if !ok {
		return nil
	}
	k := e.Value.(*cachedKeys).keys
	if !k.Matches(ekPublic, akPublic) {
		return nil
	}
	c.lru.MoveToFront(e)
	return k
}

func (c *keyCache) put(machineID string, k *evidence.Keys) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[machineID]; ok {
		e.Value.(*cachedKeys).keys = k
		c.lru.MoveToFront(e)
		return
	}
	c.m[machineID] = c.lru.PushFront(&cachedKeys{machineID: machineID, keys: k})
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.m, oldest.Value.(*cachedKeys).machineID)
	}
}

// len returns the number of machines whose keys c holds.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
