package store

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/eventlog"
)

// TestSameBootStateCoversFields fails when BootState or eventlog.Event
// gains a field: sameBootState must then compare it too.
func TestSameBootStateCoversFields(t *testing.T) {
	for _, c := range []struct {
		typ  reflect.Type
		want []string
	}{
		{reflect.TypeFor[BootState](), []string{"PCRs", "Events", "At"}},
		{reflect.TypeFor[eventlog.Event](), []string{"PCR", "Sequence", "Type", "TypeName", "Digest", "Description"}},
	} {
		var got []string
		for f := range c.typ.Fields() {
			got = append(got, f.Name)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%v has fields %v; sameBootState compares %v: compare the new ones there, then list them here", c.typ, got, c.want)
		}
	}
}

// TestSameBootStateIsDeepEqual: sameBootState agrees with
// reflect.DeepEqual on a boot state and each one-field change of it.
func TestSameBootStateIsDeepEqual(t *testing.T) {
	at := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	base := func() *BootState {
		return &BootState{
			PCRs: map[int][]byte{0: {1, 2}, 7: {3}},
			Events: []eventlog.Event{
				{PCR: 0, Sequence: 0, Type: 8, TypeName: "EV_S_CRTM_VERSION", Digest: []byte{9}, Description: "crtm"},
				{PCR: 7, Sequence: 1, Type: 0x80000001, TypeName: "EV_EFI_VARIABLE_DRIVER_CONFIG", Digest: []byte{8, 7}},
			},
			At: at,
		}
	}
	changes := map[string]func(*BootState) *BootState{
		"same":             func(s *BootState) *BootState { return s },
		"nil":              func(*BootState) *BootState { return nil },
		"pcr digest":       func(s *BootState) *BootState { s.PCRs[7] = []byte{4}; return s },
		"pcr index":        func(s *BootState) *BootState { s.PCRs[8] = s.PCRs[7]; delete(s.PCRs, 7); return s },
		"pcr added":        func(s *BootState) *BootState { s.PCRs[9] = []byte{}; return s },
		"pcr nil digest":   func(s *BootState) *BootState { s.PCRs[7] = nil; return s },
		"pcrs nil":         func(s *BootState) *BootState { s.PCRs = nil; return s },
		"pcrs empty":       func(s *BootState) *BootState { s.PCRs = map[int][]byte{}; return s },
		"events nil":       func(s *BootState) *BootState { s.Events = nil; return s },
		"events empty":     func(s *BootState) *BootState { s.Events = []eventlog.Event{}; return s },
		"event dropped":    func(s *BootState) *BootState { s.Events = s.Events[:1]; return s },
		"event pcr":        func(s *BootState) *BootState { s.Events[1].PCR = 8; return s },
		"event sequence":   func(s *BootState) *BootState { s.Events[1].Sequence = 2; return s },
		"event type":       func(s *BootState) *BootState { s.Events[1].Type = 1; return s },
		"event type name":  func(s *BootState) *BootState { s.Events[1].TypeName = "x"; return s },
		"event digest":     func(s *BootState) *BootState { s.Events[0].Digest = []byte{10}; return s },
		"event nil digest": func(s *BootState) *BootState { s.Events[0].Digest = nil; return s },
		"event desc":       func(s *BootState) *BootState { s.Events[1].Description = "y"; return s },
		"at":               func(s *BootState) *BootState { s.At = at.Add(time.Nanosecond); return s },
		"at location":      func(s *BootState) *BootState { s.At = at.In(time.FixedZone("x", 0)); return s },
		"at monotonic":     func(s *BootState) *BootState { s.At = time.Now(); return s },
	}
	for name, change := range changes {
		a, b := base(), change(base())
		if got, want := sameBootState(a, b), reflect.DeepEqual(a, b); got != want {
			t.Errorf("%s: sameBootState = %v, reflect.DeepEqual = %v", name, got, want)
		}
		if got, want := sameBootState(b, a), reflect.DeepEqual(b, a); got != want {
			t.Errorf("%s (swapped): sameBootState = %v, reflect.DeepEqual = %v", name, got, want)
		}
	}
}

// TestSeenCacheAsDecoded: a seen record read back after a write is what
// decoding its stored bytes gives, whether the cache holds it or not.
func TestSeenCacheAsDecoded(t *testing.T) {
	db, err := Open(t.TempDir()+"/state.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := &Machine{ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Name: "m1", State: StateApproved}
	if err := db.CreateMachine(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{time.Now(), time.Now().UTC(), time.Now().In(time.FixedZone("x", 3600))} {
		if _, err := db.UpdateMachineRecord(t.Context(), m.ID, func(m *Machine) error {
			m.LastSeen, m.BootCount, m.LastAddress = at, m.BootCount+1, "192.0.2.1:1"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		cached, err := db.MachineRecord(t.Context(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		db.seen = seenCache{}
		decoded, err := db.MachineRecord(t.Context(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(seenOf(cached), seenOf(decoded)) || !cached.LastSeen.Equal(at) {
			t.Errorf("cached %+v, decoded %+v, written %v", seenOf(cached), seenOf(decoded), at)
		}
	}
}
