package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

func h(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

// testPrediction is a prediction for synthetic artifacts named by tag.
func testPrediction(tag string) *predict.Prediction {
	p := &predict.Prediction{
		BootApps: []predict.Event{{Name: "ipxe.efi", Digest: h("ipxe")}, {Name: "uki.efi", Digest: h("uki" + tag)}, {Name: "uki.efi .linux", Digest: h("kernel" + tag)}},
		KernelImage: []predict.Event{
			{Name: ".linux name", Digest: h(".linux\x00")}, {Name: ".linux", Digest: h("kernel" + tag)},
			{Name: ".initrd name", Digest: h(".initrd\x00")}, {Name: ".initrd", Digest: h("initrd" + tag)},
		},
		Cmdline: predict.Event{Name: "uki.efi console=ttyS0", Digest: h("cmdline" + tag)},
	}
	p.PCR11 = predict.Replay(p.KernelImage)
	p.PCR12 = predict.Replay([]predict.Event{p.Cmdline})
	return p
}

type ev struct {
	pcr    int
	typ    uint32
	digest []byte
}

// measured is the boot state a machine booting p reports, as OVMF and
// systemd-stub log it, with firmware PCR 0 measuring fw.
func measured(p *predict.Prediction, fw string) *store.BootState {
	evs := []ev{
		{0, 0x8, h(fw)},
		{4, evEFIAction, h("Calling EFI Application from Boot Option")},
		{4, evSeparator, separatorDigests[0]},
		{4, evEFIBootServicesApplication, p.BootApps[0].Digest},
		{4, evEFIBootServicesApplication, p.BootApps[1].Digest},
		{4, evEFIBootServicesApplication, p.BootApps[2].Digest},
	}
	for _, e := range p.KernelImage {
		evs = append(evs, ev{11, 0xd, e.Digest})
	}
	evs = append(evs, ev{12, 0xd, p.Cmdline.Digest})
	return state(evs)
}

func state(evs []ev) *store.BootState {
	bs := &store.BootState{PCRs: map[int][]byte{}}
	for i, e := range evs {
		bs.Events = append(bs.Events, eventlog.Event{PCR: e.pcr, Sequence: i + 1, Type: e.typ, Digest: e.digest})
		old, ok := bs.PCRs[e.pcr]
		if !ok {
			old = make([]byte, 32)
		}
		d := sha256.Sum256(append(bytes.Clone(old), e.digest...))
		bs.PCRs[e.pcr] = d[:]
	}
	bs.PCRs[15] = make([]byte, 32)
	return bs
}

func edit(bs *store.BootState, f func(*[]ev)) *store.BootState {
	var evs []ev
	for _, e := range bs.Events {
		evs = append(evs, ev{e.PCR, e.Type, e.Digest})
	}
	f(&evs)
	return state(evs)
}

func TestEvaluatePredicted(t *testing.T) {
	p := testPrediction("v1")
	approvedAt := measured(p, "firmware-a")
	m := &store.Machine{State: store.StateApproved, Policy: store.PolicyPredicted, Approved: approvedAt}
	tampered := testPrediction("v1")
	tampered.KernelImage[3].Digest = h("initrd with one byte changed")
	tampered.PCR11 = predict.Replay(tampered.KernelImage)
	// A real tampered UKI: the initramfs byte changes the UKI's
	// Authenticode digest (PCR 4) and its .initrd section (PCR 11).
	tamperedUKI := testPrediction("v1")
	tamperedUKI.BootApps[1].Digest = h("uki with one initrd byte changed")
	tamperedUKI.KernelImage[3].Digest = h("initrd with one byte changed")
	tamperedUKI.PCR11 = predict.Replay(tamperedUKI.KernelImage)
	otherCmdline := testPrediction("v1")
	otherCmdline.Cmdline.Digest = h("cmdline init=/bin/sh")
	otherCmdline.PCR12 = predict.Replay([]predict.Event{otherCmdline.Cmdline})

	tests := []struct {
		name     string
		m        *store.Machine
		observed *store.BootState
		pred     *predict.Prediction
		want     Decision
		reason   string
	}{
		{"good_uki", m, measured(p, "firmware-a"), p, Allow, "boot matches the prediction for uki.efi"},
		{"image_update_no_reapproval", m, measured(testPrediction("v2"), "firmware-a"), testPrediction("v2"), Allow, "1 firmware PCRs match"},
		{"initrd_byte_changed", m, measured(tampered, "firmware-a"), p, Refuse,
			"PCR 11: .initrd section digest differs: want " + hex.EncodeToString(p.KernelImage[3].Digest) + " got " + hex.EncodeToString(tampered.KernelImage[3].Digest)},
		{"uki_initrd_byte_changed_names_section", m, measured(tamperedUKI, "firmware-a"), p, Refuse,
			"PCR 11: .initrd section digest differs: want " + hex.EncodeToString(p.KernelImage[3].Digest) + " got " + hex.EncodeToString(tamperedUKI.KernelImage[3].Digest) +
				"; PCR 4: boot application 2 differs from uki.efi"},
		{"old_image_after_update", m, measured(p, "firmware-a"), testPrediction("v2"), Refuse, "PCR 4: boot application 2 differs from uki.efi"},
		{"cmdline_changed", m, measured(otherCmdline, "firmware-a"), p, Refuse, `PCR 12: command line differs: want "uki.efi console=ttyS0"`},
		{"firmware_changed", m, measured(p, "firmware-b"), p, NeedsReapproval, "firmware boot state changed in PCR 0"},
		{"no_prediction", m, measured(p, "firmware-a"), nil, Refuse, "no prediction"},
		{"bios_hint", &store.Machine{Policy: store.PolicyPredicted, Approved: approvedAt, Hints: hintsBIOS()}, measured(p, "firmware-a"), p, Refuse, "legacy BIOS boot"},
		{"no_boot_applications", m, edit(measured(p, "firmware-a"), func(e *[]ev) { *e = slices.Delete(*e, 3, 6) }), p, Refuse, "legacy BIOS boot"},
		{"bios_identity_only", &store.Machine{Policy: store.PolicyIdentityOnly, Hints: hintsBIOS()}, state([]ev{{4, evAction, h("Calling INT 19h")}}), p, Allow, "identity-only"},
		{"extra_application", m, edit(measured(p, "firmware-a"), func(e *[]ev) {
			*e = append((*e)[:4], append([]ev{{4, evEFIBootServicesApplication, h("shell.efi")}}, (*e)[4:]...)...)
		}), p, Refuse, "PCR 4: boot application 2 differs from uki.efi"},
		{"application_relabeled", m, edit(measured(p, "firmware-a"), func(e *[]ev) {
			*e = append(*e, ev{4, 0x80000004, h("evil driver")})
		}), p, Refuse, "PCR 4: unexpected event"},
		{"fake_separator", m, edit(measured(p, "firmware-a"), func(e *[]ev) {
			*e = append(*e, ev{4, evSeparator, h("evil app")})
		}), p, Refuse, "PCR 4: unexpected event"},
		{"repeated_load_counts_once", m, edit(measured(p, "firmware-a"), func(e *[]ev) {
			*e = append((*e)[:5], append([]ev{{4, evEFIBootServicesApplication, p.BootApps[1].Digest}}, (*e)[5:]...)...)
		}), p, Allow, "boot matches"},
		{"ipxe_rom_without_ipxe_application", m, edit(measured(p, "firmware-a"), func(e *[]ev) { *e = slices.Delete(*e, 3, 4) }), p, Allow, "boot matches"},
		{"ipxe_rom_tampered_uki", m, edit(measured(tamperedUKI, "firmware-a"), func(e *[]ev) { *e = slices.Delete(*e, 3, 4) }), p, Refuse,
			"PCR 4: boot application 1 differs from uki.efi"},
		{"ipxe_rom_other_app_first", m, edit(measured(p, "firmware-a"), func(e *[]ev) { (*e)[3].digest = h("shell.efi") }), p, Refuse,
			"PCR 4: boot application 1 differs from uki.efi"},
		{"kernel_not_loaded", m, edit(measured(p, "firmware-a"), func(e *[]ev) { *e = slices.Delete(*e, 5, 6) }), p, Refuse, "PCR 4: uki.efi .linux was not loaded"},
		{"extra_pcr12_event", m, edit(measured(p, "firmware-a"), func(e *[]ev) { *e = append(*e, ev{12, 0xd, h("credential")}) }), p, Refuse, "PCR 12: command line differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := EvaluateWith(tt.m, tt.observed, tt.pred)
			if v.Decision != tt.want || !strings.Contains(v.Reason, tt.reason) {
				t.Fatalf("got %s %q, want %s containing %q", v.Decision, v.Reason, tt.want, tt.reason)
			}
			if v.Decision == NeedsReapproval && !strings.Contains(v.Diff, "PCR 0 changed") {
				t.Errorf("diff does not show the firmware change:\n%s", v.Diff)
			}
		})
	}
}

func TestEvaluate_predicted_without_prediction_refuses(t *testing.T) {
	p := testPrediction("v1")
	m := &store.Machine{Policy: store.PolicyPredicted, Approved: measured(p, "fw")}
	if v := Evaluate(m, measured(p, "fw")); v.Decision != Refuse {
		t.Fatalf("Evaluate without a prediction: %s %q", v.Decision, v.Reason)
	}
}

func hintsBIOS() wire.Hints { return wire.Hints{Firmware: "bios"} }
