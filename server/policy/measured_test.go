package policy

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/store"
)

// withoutPCRs returns bs without the events and values of pcrs: the boot
// state of a boot that never extends them (legacy BIOS, or UEFI booting a
// kernel and initrd through Debian's iPXE: nothing in PCRs 11 and 12).
func withoutPCRs(bs *store.BootState, pcrs ...int) *store.BootState {
	out := &store.BootState{PCRs: map[int][]byte{}}
	drop := map[int]bool{}
	for _, p := range pcrs {
		drop[p] = true
	}
	for p, v := range bs.PCRs {
		if !drop[p] {
			out.PCRs[p] = v
		}
	}
	for _, e := range bs.Events {
		if !drop[e.PCR] {
			out.Events = append(out.Events, e)
		}
	}
	return out
}

func TestMeasurementGap(t *testing.T) {
	uki := bootState(t, baseSpec()) // PCR 11: .linux, .cmdline, .initrd
	digest := func(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
	ev := func(pcr int, d []byte) eventlog.Event { return eventlog.Event{PCR: pcr, Digest: d} }

	tests := []struct {
		name string
		bs   *store.BootState
		gaps []string // substrings of the reason; none: no gap
	}{
		{"uki", uki, nil},
		{"unmeasured_kernel_boot", withoutPCRs(uki, 11, 12), []string{"the initramfs or the kernel command line"}},
		{"no_state", nil, []string{"no verified boot state"}},
		{"initrd_name_without_content", &store.BootState{Events: []eventlog.Event{
			ev(11, digest(".cmdline\x00")), ev(11, digest("x")), ev(11, digest(".initrd\x00")),
		}}, []string{"the initramfs"}},
		{"loader_cmdline_in_pcr12", &store.BootState{Events: []eventlog.Event{
			ev(11, digest(".initrd\x00")), ev(11, digest("initrd")), ev(12, digest("uki.efi console=ttyS0")),
		}}, nil},
		{"no_cmdline", &store.BootState{Events: []eventlog.Event{
			ev(11, digest(".initrd\x00")), ev(11, digest("initrd")),
		}}, []string{"the kernel command line"}},
		// Names are digests in PCR 11 only: another PCR or a misreported
		// type or description proves nothing.
		{"names_in_other_pcr", &store.BootState{Events: []eventlog.Event{
			ev(9, digest(".initrd\x00")), ev(9, digest("initrd")), ev(12, digest("cmdline")),
		}}, []string{"the initramfs"}},
		{"description_only", &store.BootState{Events: []eventlog.Event{
			{PCR: 11, Type: 0xd, TypeName: "EV_IPL", Description: ".initrd", Digest: digest("forged")},
			ev(11, digest("initrd")), ev(12, digest("cmdline")),
		}}, []string{"the initramfs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gap := MeasurementGap(tt.bs)
			if len(tt.gaps) == 0 {
				if gap != "" {
					t.Fatalf("MeasurementGap = %q, want none", gap)
				}
				return
			}
			for _, g := range tt.gaps {
				if !strings.Contains(gap, g) {
					t.Errorf("MeasurementGap = %q, want it to contain %q", gap, g)
				}
			}
		})
	}
}

// TestMeasurementGap_recordedUKIBoot checks a real OVMF + swtpm boot of
// the UKI through Debian's iPXE (server/predict/testdata).
func TestMeasurementGap_recordedUKIBoot(t *testing.T) {
	raw, err := os.ReadFile("../predict/testdata/ovmf-pxe-ipxe-uki/bootstate.json")
	if err != nil {
		t.Fatal(err)
	}
	var bs store.BootState
	if err := json.Unmarshal(raw, &bs); err != nil {
		t.Fatal(err)
	}
	if gap := MeasurementGap(&bs); gap != "" {
		t.Fatalf("recorded UKI boot: %s", gap)
	}
	if gap := MeasurementGap(withoutPCRs(&bs, 11, 12)); gap == "" {
		t.Fatalf("recorded UKI boot without PCRs 11 and 12: no gap")
	}
}

// TestEvaluate_unmeasuredBootRefused is issue 11 defect 0: a boot whose
// log does not measure the initramfs reports the same PCRs whatever
// initramfs it ran, so matching pins prove nothing about the code that
// would receive the credential. Every policy but identity-only refuses it
// by the boot-measurement check, before comparing PCRs.
func TestEvaluate_unmeasuredBootRefused(t *testing.T) {
	unmeasured := withoutPCRs(bootState(t, baseSpec()), 11, 12)
	for _, pol := range []store.Policy{"", store.PolicyPinned, store.PolicyPredicted} {
		m := &store.Machine{Policy: pol, Approved: approved(unmeasured)}
		v := EvaluateWith(m, unmeasured, nil)
		if v.Decision != Refuse || v.Check != CheckBootMeasurement || !strings.Contains(v.Reason, "does not measure the initramfs") {
			t.Errorf("policy %q: %v check %q (%s), want refuse by %s", pol, v.Decision, v.Check, v.Reason, CheckBootMeasurement)
		}
	}
	m := &store.Machine{Policy: store.PolicyIdentityOnly, Approved: approved(unmeasured)}
	if v := Evaluate(m, unmeasured); v.Decision != Allow {
		t.Errorf("identity-only: %v (%s), want allow", v.Decision, v.Reason)
	}
	// A measured boot with the same pins is judged by its PCRs as before.
	measured := bootState(t, baseSpec())
	m = &store.Machine{Policy: store.PolicyPinned, Approved: approved(measured)}
	if v := Evaluate(m, measured); v.Decision != Allow || v.Check != "" {
		t.Errorf("measured boot: %v check %q (%s), want allow", v.Decision, v.Check, v.Reason)
	}
}
