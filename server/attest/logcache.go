package attest

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/wire"
)

// maxVerifiedLogs bounds verifiedLogs; past it the cache starts over.
const maxVerifiedLogs = 100_000

// verifiedLogs remembers, per enrolled machine, the last event log that
// verified and the events it yielded. eventlog.Verify is a pure function
// of the log and the quoted PCR values, and a machine boots with the same
// firmware log every time, so a repeat is answered from the SHA-256 of
// both without parsing and replaying the log again. Only successes are
// kept: a log that fails is verified (and fails) every time.
//
// The zero value is ready to use; it is safe for concurrent use.
type verifiedLogs struct {
	mu sync.Mutex // guards m
	m  map[string]verifiedLog
}

type verifiedLog struct {
	key    [sha256.Size]byte
	events []eventlog.Event // never handed out: callers get copies
}

// verify is eventlog.Verify(raw, pcrs), remembered for machineID.
func (c *verifiedLogs) verify(machineID string, raw []byte, pcrs []wire.PCR) ([]eventlog.Event, error) {
	key := logKey(raw, pcrs)
	c.mu.Lock()
	e, ok := c.m[machineID]
	c.mu.Unlock()
	if ok && e.key == key {
		return slices.Clone(e.events), nil
	}
	events, err := eventlog.Verify(raw, pcrs)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxVerifiedLogs {
		c.m = make(map[string]verifiedLog)
	}
	c.m[machineID] = verifiedLog{key, slices.Clone(events)}
	return events, nil
}

// logKey is the SHA-256 of an unambiguous encoding of raw and pcrs.
func logKey(raw []byte, pcrs []wire.PCR) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	h.Write(binary.BigEndian.AppendUint64(n[:0], uint64(len(raw))))
	h.Write(raw)
	for _, p := range pcrs {
		h.Write(binary.BigEndian.AppendUint64(n[:0], uint64(p.Index)))
		h.Write(binary.BigEndian.AppendUint64(n[:0], uint64(len(p.Digest))))
		h.Write(p.Digest)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}
