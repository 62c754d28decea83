package policy

import (
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// FuzzDiffEvents builds two boot states from arbitrary bytes (PCR values
// and event digests) and checks DiffEvents never panics, stays under
// MaxDiffSize, and is empty exactly when no PCR value differs.
func FuzzDiffEvents(f *testing.F) {
	f.Add([]byte{4, 1, 2, 9, 3}, []byte{4, 1, 3, 9, 3})
	f.Add([]byte{0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		old, new := stateFrom(a), stateFrom(b)
		diff := DiffEvents(old, new)
		if len(diff) > MaxDiffSize {
			t.Fatalf("diff of %d bytes", len(diff))
		}
		changed := len(Rules(old)) != len(Rules(new))
		for _, r := range Rules(old) {
			changed = changed || !r.Match(new)
		}
		if changed == (diff == "") {
			t.Fatalf("changed=%v but diff=%q", changed, diff)
		}
		if diff != "" && !strings.HasPrefix(diff, "PCR ") {
			t.Fatalf("diff starts with %q", diff)
		}
	})
}

// stateFrom reads (pcr, value byte) pairs; every pair is also an event.
func stateFrom(b []byte) *store.BootState {
	st := &store.BootState{PCRs: map[int][]byte{}}
	for i := 0; i+1 < len(b); i += 2 {
		pcr := int(b[i] % 16)
		if pcr == wire.ReleasePCR {
			continue
		}
		st.PCRs[pcr] = []byte{b[i+1]}
		st.Events = append(st.Events, eventlog.Event{PCR: pcr, Sequence: i, Type: uint32(b[i+1] % 3), Digest: []byte{b[i+1]}})
	}
	return st
}
