package policy

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// Under store.PolicyPredicted, PCRs 4, 11 and 12 are judged against the
// prediction and PCR 9 is not judged: it holds the initrd and command
// line again (measured by the kernel's EFI stub), which PCRs 11 and 12
// already prove and which change with every image update. Every other
// approved PCR (firmware: 0-3, 5-7; and 8, 13, 14, zero in a sealroot
// boot) stays pinned.
var predictedPCRs = []int{predict.PCRBootApps, 9, predict.PCRKernelImage, predict.PCRKernelCommand, wire.ReleasePCR}

// TCG event types judged in PCR 4.
const (
	evAction                     = 0x00000005
	evSeparator                  = 0x00000004
	evEFIBootServicesApplication = 0x80000003
	evEFIAction                  = 0x80000007
	evEFIVariableDriverConfig    = 0x80000001
	evEFIVariableAuthority       = 0x800000E0
)

// separatorDigests are the sha256-bank digests of the separators firmware
// logs: SHA-256 of the UINT32 0 (normal) or 1 (error), or SHA-1 of them
// zero-padded (SeaBIOS before 1.15).
var separatorDigests = func() [][]byte {
	var out [][]byte
	for _, v := range [][]byte{{0, 0, 0, 0}, {1, 0, 0, 0}} {
		s256 := sha256.Sum256(v)
		s1 := sha1.Sum(v)
		out = append(out, s256[:], append(s1[:], make([]byte, sha256.Size-sha1.Size)...))
	}
	return out
}()

// legacyBIOSReason is why a BIOS boot is refused unless identity-only.
const legacyBIOSReason = "legacy BIOS boot: the kernel, initramfs and command line are not measured; only policy identity-only allows it"

// evaluatePredicted judges a machine under store.PolicyPredicted: boot
// PCRs against pred (a mismatch is a Refuse naming the event), then the
// pinned firmware PCRs (a change needs re-approval).
func evaluatePredicted(m *store.Machine, observed *store.BootState, pred *predict.Prediction) Verdict {
	if pred == nil {
		return Verdict{Decision: Refuse, Reason: "no prediction of the served boot artifacts (is a UKI configured?)"}
	}
	if m.Hints.Firmware == "bios" || len(bootAppEvents(observed)) == 0 {
		return Verdict{Decision: Refuse, Reason: legacyBIOSReason}
	}
	// Every mismatch is named, the UKI's sections first: a changed
	// initramfs also changes the UKI's PCR 4 digest, and "PCR 11: .initrd
	// differs" tells the operator what changed inside it.
	var reasons []string
	for _, check := range []func(*store.BootState, *predict.Prediction) string{checkKernelImage, checkCmdline, checkBootApps} {
		if reason := check(observed, pred); reason != "" {
			reasons = append(reasons, reason)
		}
	}
	if len(reasons) > 0 {
		return Verdict{Decision: Refuse, Reason: strings.Join(reasons, "; ")}
	}
	if v, ok := checkSecureBoot(m, observed, pred); !ok {
		return v
	}
	var rules []Rule
	for _, r := range Rules(m.Approved) {
		if !slices.Contains(predictedPCRs, r.PCR) && !(pred.SecureBoot != nil && r.PCR == predict.PCRSecureBootPolicy) {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		return Verdict{Decision: Refuse, Reason: "approved boot state pins no firmware PCRs"}
	}
	if changed := changedPCRs(rules, observed); len(changed) > 0 {
		return Verdict{
			Decision: NeedsReapproval,
			Reason:   fmt.Sprintf("firmware boot state changed in PCR %s", joinInts(changed)),
			Diff:     DiffEvents(onlyPCRs(m.Approved, changed), onlyPCRs(observed, changed)),
		}
	}
	return Verdict{Decision: Allow, Reason: fmt.Sprintf("boot matches the prediction for %s (sha256:%x); %d firmware PCRs match",
		pred.BootApps[1].Name, short4(pred.BootApps[1].Digest), len(rules))}
}

// checkSecureBoot judges PCR 7 when pred predicts it (Secure Boot
// variables configured): it must equal the prediction, or the value an
// operator approved (a firmware whose keys differ from the configured
// ones, approved with its diff). Otherwise the machine needs
// re-approval, with a diff of the predicted and measured PCR 7 events.
// ok reports whether PCR 7 passed (or is not predicted).
func checkSecureBoot(m *store.Machine, observed *store.BootState, pred *predict.Prediction) (_ Verdict, ok bool) {
	if pred.SecureBoot == nil {
		return Verdict{}, true
	}
	const pcr = predict.PCRSecureBootPolicy
	got, quoted := observed.PCRs[pcr]
	switch {
	case !quoted:
		return Verdict{Decision: Refuse, Reason: "PCR 7 was not quoted"}, false
	case bytes.Equal(got, pred.SecureBoot.PCR7):
		return Verdict{}, true
	case m.Approved != nil && bytes.Equal(got, m.Approved.PCRs[pcr]):
		return Verdict{}, true
	}
	return Verdict{
		Decision: NeedsReapproval,
		Reason:   "PCR 7 (Secure Boot keys and signers) differs from the prediction from boot.secure_boot_vars",
		Diff:     DiffEvents(predictedPCR7(pred.SecureBoot), onlyPCRs(observed, []int{pcr})),
	}, false
}

// predictedPCR7 is a Secure Boot prediction as a boot state, for
// DiffEvents.
func predictedPCR7(p *predict.SecureBootPrediction) *store.BootState {
	bs := &store.BootState{PCRs: map[int][]byte{predict.PCRSecureBootPolicy: p.PCR7}}
	for i, e := range p.Events {
		typ, name := uint32(evEFIVariableDriverConfig), "EV_EFI_VARIABLE_DRIVER_CONFIG"
		switch {
		case i == predict.PCR7Variables:
			typ, name = evSeparator, "EV_SEPARATOR"
		case i > predict.PCR7Variables:
			typ, name = evEFIVariableAuthority, "EV_EFI_VARIABLE_AUTHORITY"
		}
		bs.Events = append(bs.Events, eventlog.Event{PCR: predict.PCRSecureBootPolicy, Sequence: i, Type: typ, TypeName: name,
			Digest: e.Digest, Description: "predicted " + e.Name})
	}
	return bs
}

// bootAppEvents returns observed's PCR 4 events labeled as boot
// applications.
func bootAppEvents(observed *store.BootState) []eventlog.Event {
	var out []eventlog.Event
	for _, e := range eventsOf(observed.Events, predict.PCRBootApps) {
		if e.Type == evEFIBootServicesApplication {
			out = append(out, e)
		}
	}
	return out
}

// checkBootApps requires PCR 4 to hold exactly the predicted applications,
// in order (a repeated load of the same image counts once), and otherwise
// only events whose digest proves harmless content. Event types are not
// proven by replay, so any event with a predicted digest counts as a
// load, and any other event must be an EV_EFI_ACTION or EV_ACTION (whose
// data eventlog.Verify checked against the digest) or a separator with a
// separator's digest.
func checkBootApps(observed *store.BootState, pred *predict.Prediction) string {
	if _, ok := observed.PCRs[predict.PCRBootApps]; !ok {
		return "PCR 4 was not quoted"
	}
	var loads []eventlog.Event
	for _, e := range eventsOf(observed.Events, predict.PCRBootApps) {
		switch {
		case slices.ContainsFunc(pred.BootApps, func(p predict.Event) bool { return bytes.Equal(p.Digest, e.Digest) }):
			if n := len(loads); n == 0 || !bytes.Equal(loads[n-1].Digest, e.Digest) {
				loads = append(loads, e)
			}
		case e.Type == evEFIBootServicesApplication:
			loads = append(loads, e)
		case e.Type == evEFIAction, e.Type == evAction:
		case e.Type == evSeparator && slices.ContainsFunc(separatorDigests, func(d []byte) bool { return bytes.Equal(d, e.Digest) }):
		default:
			return "PCR 4: unexpected event " + describe(e)
		}
	}
	apps := expectedApps(loads, pred.BootApps)
	for i, want := range apps {
		if i >= len(loads) {
			return fmt.Sprintf("PCR 4: %s was not loaded (want sha256:%x)", want.Name, want.Digest)
		}
		if !bytes.Equal(loads[i].Digest, want.Digest) {
			return fmt.Sprintf("PCR 4: boot application %d differs from %s: want sha256:%x got %s", i+1, want.Name, want.Digest, describe(loads[i]))
		}
	}
	if len(loads) > len(apps) {
		return "PCR 4: unexpected boot application " + describe(loads[len(apps)])
	}
	return ""
}

// expectedApps returns the applications PCR 4 must hold, given the loads
// observed: all of them when the first load is the served iPXE (firmware
// PXE fetched ipxe.efi), else all but iPXE. A NIC whose firmware is iPXE
// (an option ROM, as under QEMU, or iPXE flashed on the card) runs the
// boot script itself, so no iPXE application is loaded; that iPXE is
// measured as a driver in PCR 2, which stays pinned. Anything else loaded
// first still fails: it is not the UKI.
func expectedApps(loads []eventlog.Event, apps []predict.Event) []predict.Event {
	if len(apps) > 1 && (len(loads) == 0 || !bytes.Equal(loads[0].Digest, apps[0].Digest)) {
		return apps[1:]
	}
	return apps
}

// checkKernelImage compares PCR 11 with the prediction and names the
// first differing section event.
func checkKernelImage(observed *store.BootState, pred *predict.Prediction) string {
	got, ok := observed.PCRs[predict.PCRKernelImage]
	if !ok {
		return "PCR 11 was not quoted"
	}
	if bytes.Equal(got, pred.PCR11) {
		return ""
	}
	events := eventsOf(observed.Events, predict.PCRKernelImage)
	for i, want := range pred.KernelImage {
		switch {
		case i >= len(events):
			return fmt.Sprintf("PCR 11: %s was not measured (want sha256:%x)", want.Name, want.Digest)
		case !bytes.Equal(events[i].Digest, want.Digest):
			return fmt.Sprintf("PCR 11: %s section digest differs: want %x got %x", want.Name, want.Digest, events[i].Digest)
		}
	}
	if len(events) > len(pred.KernelImage) {
		return "PCR 11: unexpected event " + describe(events[len(pred.KernelImage)])
	}
	return fmt.Sprintf("PCR 11 value differs from the prediction for %s sha256:%x", pred.BootApps[1].Name, pred.BootApps[1].Digest)
}

// checkCmdline compares PCR 12 with the predicted command-line event.
func checkCmdline(observed *store.BootState, pred *predict.Prediction) string {
	got, ok := observed.PCRs[predict.PCRKernelCommand]
	if !ok {
		return "PCR 12 was not quoted"
	}
	if bytes.Equal(got, pred.PCR12) {
		return ""
	}
	events := eventsOf(observed.Events, predict.PCRKernelCommand)
	if len(events) == 0 {
		return fmt.Sprintf("PCR 12: command line %q was not measured", pred.Cmdline.Name)
	}
	for _, e := range events {
		if !bytes.Equal(e.Digest, pred.Cmdline.Digest) {
			return fmt.Sprintf("PCR 12: command line differs: want %q (sha256:%x) got %s", pred.Cmdline.Name, short4(pred.Cmdline.Digest), describe(e))
		}
	}
	return fmt.Sprintf("PCR 12: unexpected events besides the command line %q", pred.Cmdline.Name)
}

// describe names an event for a refusal: sequence, type, digest and its
// (unproven, operator-only) description.
func describe(e eventlog.Event) string {
	return eventLine('#', e)[4:]
}

func onlyPCRs(bs *store.BootState, pcrs []int) *store.BootState {
	out := &store.BootState{PCRs: map[int][]byte{}, At: bs.At}
	for _, p := range pcrs {
		if v, ok := bs.PCRs[p]; ok {
			out.PCRs[p] = v
		}
	}
	for _, e := range bs.Events {
		if slices.Contains(pcrs, e.PCR) {
			out.Events = append(out.Events, e)
		}
	}
	return out
}

func short4(d []byte) []byte { return d[:min(len(d), 4)] }
