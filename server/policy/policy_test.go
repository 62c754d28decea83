package policy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/wire"
)

var quoted = []int{0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 15}

func baseSpec() fakeboot.Spec {
	return fakeboot.Spec{
		Firmware: "OVMF 2022.11",
		Loader:   []byte("ipxe.efi"),
		Kernel:   []byte("vmlinuz 6.1.192"),
		Initrd:   []byte("initramfs"),
		Cmdline:  "vmlinuz.efi console=ttyS0",
	}
}

// bootState builds a verified boot state from a fakeboot spec, as the
// attestation service would after eventlog.Verify.
func bootState(t testing.TB, s fakeboot.Spec) *store.BootState {
	t.Helper()
	b, err := fakeboot.Build(s)
	if err != nil {
		t.Fatalf("fakeboot.Build: %v", err)
	}
	pcrs := b.Quoted(quoted...)
	events, err := eventlog.Verify(b.Log, pcrs)
	if err != nil {
		t.Fatalf("eventlog.Verify: %v", err)
	}
	return stateOf(pcrs, events)
}

func stateOf(pcrs []wire.PCR, events []eventlog.Event) *store.BootState {
	st := &store.BootState{PCRs: map[int][]byte{}, Events: events}
	for _, p := range pcrs {
		st.PCRs[p.Index] = p.Digest
	}
	return st
}

func approved(st *store.BootState) *store.BootState {
	return &store.BootState{PCRs: PinnedPCRs(st), Events: st.Events}
}

func TestEvaluate(t *testing.T) {
	base := bootState(t, baseSpec())
	newKernel := baseSpec()
	newKernel.Kernel = []byte("vmlinuz 6.1.200")
	kernelChanged := bootState(t, newKernel)
	released := bootState(t, baseSpec())
	released.PCRs[15] = bytes.Repeat([]byte{1}, 32)
	missing4 := bootState(t, baseSpec())
	delete(missing4.PCRs, 4)

	tests := []struct {
		name     string
		m        *store.Machine
		observed *store.BootState
		want     Decision
		reason   string
		diff     string
	}{
		{"same_state_allowed", &store.Machine{Policy: store.PolicyPinned, Approved: approved(base)}, base, Allow, "pinned PCRs match", ""},
		{"empty_policy_is_pinned", &store.Machine{Approved: approved(base)}, base, Allow, "match", ""},
		{"pcr15_not_pinned", &store.Machine{Approved: approved(base)}, released, Allow, "match", ""},
		{"kernel_changed", &store.Machine{Approved: approved(base)}, kernelChanged, NeedsReapproval, "PCR 4, 11", "PCR 4 changed"},
		{"pinned_pcr_missing", &store.Machine{Approved: approved(base)}, missing4, NeedsReapproval, "PCR 4", "PCR 4 changed"},
		{"not_approved", &store.Machine{Policy: store.PolicyPinned}, base, Refuse, "no approved boot state", ""},
		{"nothing_pinned", &store.Machine{Approved: &store.BootState{}}, base, Refuse, "pins no PCRs", ""},
		{"no_observed_state", &store.Machine{Approved: approved(base)}, nil, Refuse, "no verified boot state", ""},
		{"identity_only", &store.Machine{Policy: store.PolicyIdentityOnly}, kernelChanged, Allow, "boot state not checked", ""},
		{"identity_only_without_state", &store.Machine{Policy: store.PolicyIdentityOnly}, nil, Allow, "not checked", ""},
		{"unknown_policy", &store.Machine{Policy: "lenient", Approved: approved(base)}, base, Refuse, "unknown policy", ""},
		{"revoked", &store.Machine{State: store.StateRevoked, Policy: store.PolicyIdentityOnly}, base, Refuse, "revoked", ""},
		{"nil_machine", nil, base, Refuse, "no machine record", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Evaluate(tt.m, tt.observed)
			if v.Decision != tt.want {
				t.Fatalf("Evaluate = %v (%s), want %v", v.Decision, v.Reason, tt.want)
			}
			if !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", v.Reason, tt.reason)
			}
			if !strings.Contains(v.Diff, tt.diff) || (tt.diff == "") != (v.Diff == "") {
				t.Errorf("Diff = %q, want it to contain %q", v.Diff, tt.diff)
			}
		})
	}
}

func TestPinnedPCRs(t *testing.T) {
	st := bootState(t, baseSpec())
	pinned := PinnedPCRs(st)
	if _, ok := pinned[15]; ok {
		t.Errorf("PinnedPCRs pins PCR 15")
	}
	if len(pinned) != len(st.PCRs)-1 {
		t.Errorf("PinnedPCRs pinned %d PCRs, want %d", len(pinned), len(st.PCRs)-1)
	}
	pinned[4][0] ^= 1
	if bytes.Equal(pinned[4], st.PCRs[4]) {
		t.Errorf("PinnedPCRs shares memory with the reported state")
	}
	if PinnedPCRs(nil) != nil {
		t.Errorf("PinnedPCRs(nil) != nil")
	}
}

func TestDiffEvents(t *testing.T) {
	base := bootState(t, baseSpec())
	change := func(f func(*fakeboot.Spec)) *store.BootState {
		s := baseSpec()
		f(&s)
		return bootState(t, s)
	}
	tests := []struct {
		name    string
		new     *store.BootState
		want    []string
		notWant []string
	}{
		{
			name: "firmware_change",
			new:  change(func(s *fakeboot.Spec) { s.Firmware = "OVMF 2023.05" }),
			want: []string{
				"PCR 0 changed: ",
				"  - #2 EV_S_CRTM_VERSION sha256:",
				"(OVMF 2022.11)",
				"  + #2 EV_S_CRTM_VERSION sha256:",
				"(OVMF 2023.05)",
				"EV_EFI_PLATFORM_FIRMWARE_BLOB",
			},
			notWant: []string{"PCR 4", "PCR 9", "EV_SEPARATOR"},
		},
		{
			name:    "kernel_change",
			new:     change(func(s *fakeboot.Spec) { s.Kernel = []byte("vmlinuz 6.1.200") }),
			want:    []string{"PCR 4 changed: ", `EV_EFI_BOOT_SERVICES_APPLICATION sha256:`, `(\vmlinuz.efi)`, "PCR 11 changed"},
			notWant: []string{"PCR 0", "ipxe.efi", "Calling EFI Application"},
		},
		{
			name:    "initrd_change",
			new:     change(func(s *fakeboot.Spec) { s.Initrd = []byte("initramfs 2") }),
			want:    []string{"PCR 9 changed: ", "  - #", "  + #", "(Linux initrd)"},
			notWant: []string{"PCR 4", "LoadOptions"},
		},
		{
			name: "same_state",
			new:  base,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff := DiffEvents(base, tt.new)
			t.Logf("diff:\n%s", diff)
			for _, w := range tt.want {
				if !strings.Contains(diff, w) {
					t.Errorf("diff lacks %q:\n%s", w, diff)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(diff, w) {
					t.Errorf("diff mentions %q:\n%s", w, diff)
				}
			}
			if tt.want == nil && diff != "" {
				t.Errorf("diff of equal states = %q, want empty", diff)
			}
		})
	}
}

func TestDiffEventsEdges(t *testing.T) {
	d := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	tests := []struct {
		name     string
		old, new *store.BootState
		want     string
	}{
		{"nil_old", nil, &store.BootState{PCRs: map[int][]byte{4: d(1)}},
			"PCR 4 changed: (absent) -> 01010101…\n  (no event differences recorded)\n"},
		{"nil_both", nil, nil, ""},
		{"pcr_dropped", &store.BootState{PCRs: map[int][]byte{7: d(2)}}, &store.BootState{},
			"PCR 7 changed: 02020202… -> (absent)\n  (no event differences recorded)\n"},
		{"event_without_name", &store.BootState{PCRs: map[int][]byte{5: d(1)}},
			&store.BootState{PCRs: map[int][]byte{5: d(2)}, Events: []eventlog.Event{{PCR: 5, Sequence: 3, Type: 0x99, Digest: d(0xab)}}},
			"PCR 5 changed: 01010101… -> 02020202…\n  + #3 0x00000099 sha256:abababab\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DiffEvents(tt.old, tt.new); got != tt.want {
				t.Errorf("DiffEvents = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDiffEventsCapped(t *testing.T) {
	var old, new []eventlog.Event
	for i := range 5000 {
		old = append(old, eventlog.Event{PCR: 4, Sequence: i, Type: 0x80000003, TypeName: "EV_EFI_BOOT_SERVICES_APPLICATION",
			Digest: []byte(fmt.Sprintf("%032d", i)), Description: strings.Repeat("x", 80)})
		new = append(new, eventlog.Event{PCR: 4, Sequence: i, Type: 0x80000003, Digest: []byte(fmt.Sprintf("%032d", i+1))})
	}
	diff := DiffEvents(
		&store.BootState{PCRs: map[int][]byte{4: {1}}, Events: old},
		&store.BootState{PCRs: map[int][]byte{4: {2}}, Events: new})
	if len(diff) > MaxDiffSize {
		t.Errorf("diff of %d bytes, over MaxDiffSize %d", len(diff), MaxDiffSize)
	}
	if !strings.Contains(diff, "more lines\n") {
		t.Errorf("capped diff does not say it was truncated: ...%s", diff[len(diff)-100:])
	}
}

func BenchmarkEvaluateChanged(b *testing.B) {
	base := bootState(b, baseSpec())
	s := baseSpec()
	s.Kernel = []byte("other")
	changed := bootState(b, s)
	m := &store.Machine{Approved: approved(base)}
	for b.Loop() {
		Evaluate(m, changed)
	}
}
