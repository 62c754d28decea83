package store

import (
	"bytes"
	"crypto/sha256"
	"maps"
	"runtime"
	"slices"
	"sync"
)

// machineCache keeps each machine decoded, with the SHA-256 of the stored
// bytes it was decoded from. A lookup hits only when the record read in the
// current transaction has that digest, so the cache never returns anything
// but what is stored and needs no invalidation; it saves the JSON decoding
// that dominates reads (a machine with two boot states is about 20 KB of
// JSON, 0.3 ms to decode: 3 s for a list of 10,000). The price is memory:
// one decoded copy of every machine read (about 30 KB each).
type machineCache struct {
	mu sync.Mutex
	m  map[string]cachedMachine // by machine ID
}

type cachedMachine struct {
	sum [sha256.Size]byte
	m   *Machine // never handed out: callers get clones
}

func newMachineCache() *machineCache {
	return &machineCache{m: map[string]cachedMachine{}}
}

// decode returns the machine stored as v under id, from the cache when v
// is what it was decoded from.
func (c *machineCache) decode(id string, v []byte) (*Machine, error) {
	sum := sha256.Sum256(v)
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && e.sum == sum {
		return e.m.clone(), nil
	}
	m, err := decodeMachine(id, v)
	if err != nil {
		return nil, err
	}
	c.putSum(id, sum, m)
	return m, nil
}

// put records m as the decoding of buf, its stored encoding.
func (c *machineCache) put(id string, buf []byte, m *Machine) {
	c.putSum(id, sha256.Sum256(buf), m)
}

func (c *machineCache) putSum(id string, sum [sha256.Size]byte, m *Machine) {
	m = m.clone()
	c.mu.Lock()
	c.m[id] = cachedMachine{sum: sum, m: m}
	c.mu.Unlock()
}

func (c *machineCache) remove(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// record is one stored machine as read in a transaction.
type record struct {
	id string
	v  []byte // valid only inside the transaction
}

// decodeAll decodes recs in order, on every CPU: a list of 10,000 machines
// the cache does not hold yet is CPU-bound. It must run inside the
// transaction recs were read in.
func (c *machineCache) decodeAll(recs []record) ([]*Machine, error) {
	out := make([]*Machine, len(recs))
	errs := make([]error, len(recs))
	workers := min(runtime.GOMAXPROCS(0), len(recs))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				out[i], errs[i] = c.decode(recs[i].id, recs[i].v)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// clone returns a deep copy of m: the copy shares no memory with m.
func (m *Machine) clone() *Machine {
	c := *m
	c.EKPublic = bytes.Clone(m.EKPublic)
	c.EKCert = bytes.Clone(m.EKCert)
	c.AKPublic = bytes.Clone(m.AKPublic)
	c.Hints.MACs = slices.Clone(m.Hints.MACs)
	c.Approved = m.Approved.clone()
	c.Reported = m.Reported.clone()
	c.Root.Params = maps.Clone(m.Root.Params)
	return &c
}

func (s *BootState) clone() *BootState {
	if s == nil {
		return nil
	}
	c := *s
	if s.PCRs != nil {
		c.PCRs = make(map[int][]byte, len(s.PCRs))
		for i, d := range s.PCRs {
			c.PCRs[i] = bytes.Clone(d)
		}
	}
	c.Events = slices.Clone(s.Events)
	for i := range c.Events {
		c.Events[i].Digest = bytes.Clone(c.Events[i].Digest)
	}
	return &c
}
