// Package policy judges a machine's verified boot state against its record.
// It is pure: no I/O, no clocks, no randomness; the caller verifies the
// quote and event log first (server/eventlog) and acts on the Verdict.
//
// A machine's boot state is checked PCR by PCR. Under store.PolicyPinned
// every PCR is a Rule pinning the value an operator approved. Under
// store.PolicyPredicted the firmware PCRs stay pinned while the boot PCRs
// (4, 11, 12) are checked against a server/predict Prediction computed from
// the artifacts sealroot serves (iPXE, UKI, command line), so updates to
// those need no re-approval, and a mismatch is refused naming the event.
package policy

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// Decision is the outcome of Evaluate. The zero value is Refuse.
type Decision int

// Decisions.
const (
	Refuse          Decision = iota // do not release credentials
	NeedsReapproval                 // boot state changed; an operator must approve it
	Allow                           // release credentials
)

func (d Decision) String() string {
	switch d {
	case Refuse:
		return "refuse"
	case NeedsReapproval:
		return "needs-reapproval"
	case Allow:
		return "allow"
	}
	return fmt.Sprintf("decision(%d)", int(d))
}

// Verdict is Evaluate's judgement.
type Verdict struct {
	Decision Decision
	// Reason is a short operator-readable explanation.
	Reason string
	// Check names the check that refused, when it is not the boot state
	// comparison itself (CheckBootMeasurement).
	Check string
	// Diff is the readable event diff when Decision is NeedsReapproval.
	Diff string
}

// Rule judges one PCR of an observed boot state.
type Rule struct {
	PCR int
	// Pinned is the approved sha256 value.
	Pinned []byte
}

// Match reports whether observed satisfies r.
func (r Rule) Match(observed *store.BootState) bool {
	got, ok := observed.PCRs[r.PCR]
	return ok && bytes.Equal(got, r.Pinned)
}

// Rules returns the rules an approved boot state implies: one pinned value
// per approved PCR except wire.ReleasePCR, ordered by PCR.
func Rules(approved *store.BootState) []Rule {
	var rules []Rule
	for pcr, v := range PinnedPCRs(approved) {
		rules = append(rules, Rule{PCR: pcr, Pinned: v})
	}
	slices.SortFunc(rules, func(a, b Rule) int { return a.PCR - b.PCR })
	return rules
}

// Evaluate judges observed, a verified boot state, against m's policy.
// Under every policy but store.PolicyIdentityOnly a boot whose event log
// does not measure the initramfs and command line (MeasurementGap) is
// refused before its PCRs are compared. It checks only the boot state; the caller handles enrollment states
// (pending, revoked) before releasing anything. A machine with
// store.PolicyPredicted needs EvaluateWith.
func Evaluate(m *store.Machine, observed *store.BootState) Verdict {
	return EvaluateWith(m, observed, nil)
}

// EvaluateWith is Evaluate with pred, the prediction for the artifacts
// the server serves now, which store.PolicyPredicted checks the boot
// PCRs against (nil: none available, so such machines are refused).
func EvaluateWith(m *store.Machine, observed *store.BootState, pred *predict.Prediction) Verdict {
	switch {
	case m == nil:
		return Verdict{Decision: Refuse, Reason: "no machine record"}
	case m.State == store.StateRevoked:
		return Verdict{Decision: Refuse, Reason: "machine is revoked"}
	case m.Policy == store.PolicyIdentityOnly:
		return Verdict{Decision: Allow, Reason: "identity-only policy: boot state not checked"}
	case m.Policy != store.PolicyPinned && m.Policy != store.PolicyPredicted && m.Policy != "":
		return Verdict{Decision: Refuse, Reason: fmt.Sprintf("unknown policy %q", m.Policy)}
	case observed == nil:
		return Verdict{Decision: Refuse, Reason: "no verified boot state"}
	}
	if gap := MeasurementGap(observed); gap != "" {
		return Verdict{Decision: Refuse, Check: CheckBootMeasurement, Reason: gap}
	}
	switch {
	case m.Approved == nil:
		return Verdict{Decision: Refuse, Reason: "no approved boot state"}
	case m.Policy == store.PolicyPredicted:
		return evaluatePredicted(m, observed, pred)
	}
	rules := Rules(m.Approved)
	if len(rules) == 0 {
		return Verdict{Decision: Refuse, Reason: "approved boot state pins no PCRs"}
	}
	if changed := changedPCRs(rules, observed); len(changed) > 0 {
		return Verdict{
			Decision: NeedsReapproval,
			Reason:   fmt.Sprintf("boot state changed in PCR %s", joinInts(changed)),
			Diff:     DiffEvents(m.Approved, observed),
		}
	}
	return Verdict{Decision: Allow, Reason: fmt.Sprintf("%d pinned PCRs match", len(rules))}
}

// PinnedPCRs returns what approving reported pins: every reported PCR
// except wire.ReleasePCR. The values are copies.
func PinnedPCRs(reported *store.BootState) map[int][]byte {
	if reported == nil {
		return nil
	}
	pinned := make(map[int][]byte, len(reported.PCRs))
	for pcr, v := range reported.PCRs {
		if pcr != wire.ReleasePCR {
			pinned[pcr] = slices.Clone(v)
		}
	}
	return pinned
}

func joinInts(xs []int) string {
	var b []byte
	for i, x := range xs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%d", x)
	}
	return string(b)
}

// changedPCRs returns the PCRs of rules that observed does not match.
func changedPCRs(rules []Rule, observed *store.BootState) []int {
	var changed []int
	for _, r := range rules {
		if !r.Match(observed) {
			changed = append(changed, r.PCR)
		}
	}
	return changed
}
