package store

import (
	"bytes"
	"hash/maphash"
	"maps"
	"runtime"
	"slices"
	"sync"
)

// machineCache keeps each machine decoded, with a digest of the stored
// bytes it was decoded from. A lookup hits only when the record read in the
// current transaction has that digest, so the cache returns only what is
// stored and needs no invalidation; it saves the JSON decoding that
// dominates reads (a machine with two boot states is about 20 KB of JSON,
// 0.3 ms to decode: 3 s for a list of 10,000). The price is memory: one
// decoded copy of every machine read (about 30 KB each).
//
// The digest is 128 bits of maphash under two seeds chosen at random per
// process: records are written by the server, and nobody who could shape
// one knows the seeds, so a collision is a 2^-128 accident. SHA-256 cost
// twice as much as the clone it guarded.
type machineCache struct {
	seeds [2]maphash.Seed

	mu sync.Mutex
	m  map[string]cachedMachine // by machine ID
}

type recordSum [2]uint64

type cachedMachine struct {
	sum recordSum
	m   *Machine // never handed out: callers get clones
}

func newMachineCache() *machineCache {
	return &machineCache{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, m: map[string]cachedMachine{}}
}

func (c *machineCache) sum(v []byte) recordSum {
	return recordSum{maphash.Bytes(c.seeds[0], v), maphash.Bytes(c.seeds[1], v)}
}

// decode returns the machine stored as v under id, from the cache when v
// is what it was decoded from.
func (c *machineCache) decode(id string, v []byte) (*Machine, error) {
	m, shared, err := c.view(id, v)
	if shared {
		m = m.clone()
	}
	return m, err
}

// view is decode for reading only: when the cache holds v's decoding it
// returns the cached machine itself and shared true. The caller must then
// change nothing in it or reachable from it, and hand none of it out.
func (c *machineCache) view(id string, v []byte) (m *Machine, shared bool, err error) {
	sum := c.sum(v)
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && e.sum == sum { // cached machines are replaced, never changed
		return e.m, true, nil
	}
	if m, err = decodeMachine(id, v); err != nil {
		return nil, false, err
	}
	c.putSum(id, sum, m)
	return m, false, nil
}

// stateVersion returns the State and Version of the machine stored as v
// under id, without copying it when the cache holds it.
func (c *machineCache) stateVersion(id string, v []byte) (State, uint64, error) {
	sum := c.sum(v)
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && e.sum == sum { // cached machines are replaced, never changed
		return e.m.State, e.m.Version, nil
	}
	m, err := decodeMachine(id, v)
	if err != nil {
		return "", 0, err
	}
	c.putSum(id, sum, m)
	return m.State, m.Version, nil
}

// put records m as the decoding of buf, its stored encoding.
func (c *machineCache) put(id string, buf []byte, m *Machine) {
	c.putSum(id, c.sum(buf), m)
}

func (c *machineCache) putSum(id string, sum recordSum, m *Machine) {
	m = m.clone()
	m.History = nil // as decoded from the record: bucket history keeps it
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
	c.History = slices.Clone(m.History)
	for i := range c.History {
		c.History[i].Stages = slices.Clone(m.History[i].Stages) // StageTiming holds only values
	}
	c.Menu = m.Menu.clone()
	return &c
}

func (mn *Menu) clone() *Menu {
	if mn == nil {
		return nil
	}
	c := *mn
	c.Images = slices.Clone(mn.Images)
	return &c
}

func (s *BootState) clone() *BootState {
	if s == nil {
		return nil
	}
	c := *s
	// One buffer for every digest: a list of 10,000 machines otherwise
	// makes a million small allocations.
	n := 0
	for _, d := range s.PCRs {
		n += len(d)
	}
	for _, e := range s.Events {
		n += len(e.Digest)
	}
	buf := make([]byte, 0, n)
	clip := func(d []byte) []byte {
		if d == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, d...)
		return buf[start:len(buf):len(buf)]
	}
	if s.PCRs != nil {
		c.PCRs = make(map[int][]byte, len(s.PCRs))
		for i, d := range s.PCRs {
			c.PCRs[i] = clip(d)
		}
	}
	c.Events = slices.Clone(s.Events)
	for i, e := range c.Events {
		c.Events[i].Digest = clip(e.Digest)
	}
	return &c
}
