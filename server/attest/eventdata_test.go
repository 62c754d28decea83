package attest_test

import (
	"slices"
	"testing"

	"github.com/sealroot/sealroot/test/fakeboot"
)

// TestRewrittenEventDataIsRefused alters the data of events whose digest is
// the hash of their data, keeping every digest (so replay still passes):
// the server must refuse the log, not show the forged text to an operator.
func TestRewrittenEventDataIsRefused(t *testing.T) {
	tests := []struct {
		name string
		pcr  int
		typ  uint32
		data string
	}{
		{"efi_action", 4, fakeboot.EvEFIAction, "Calling EFI Application from Recovery Partition"},
		{"separator", 7, fakeboot.EvSeparator, "\xff\xff\xff\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := newMachine(t, defaultSpec)
			evs := slices.Clone(m.evs)
			i := slices.IndexFunc(evs, func(ev fakeboot.Event) bool { return ev.PCR == tt.pcr && ev.Type == tt.typ })
			if i < 0 {
				t.Fatalf("fakeboot log has no event of type %#x in PCR %d", tt.typ, tt.pcr)
			}
			evs[i].Data = []byte(tt.data)
			m.log = fakeboot.Encode(evs)
			_, err := attestOnce(t, e.client(t, m.dev))
			e.wantRefused(t, err, m.id, "event-log")
			e.wantAuditReason(t, m.id, "event data does not match its digest")
			e.wantNotRecorded(t, m.id)
		})
	}
}
