package policy

import (
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/store"
)

// withPCR7 adds to p a Secure Boot prediction whose db is named by keys,
// and returns it with the boot state a machine with those keys measures.
func withPCR7(p *predict.Prediction, keys, fw string) (*predict.Prediction, *store.BootState) {
	q := *p
	q.SecureBoot = &predict.SecureBootPrediction{Events: []predict.Event{
		{Name: "SecureBoot", Digest: h("SecureBoot=1")}, {Name: "PK", Digest: h("PK")}, {Name: "KEK", Digest: h("KEK")},
		{Name: "db", Digest: h("db " + keys)}, {Name: "dbx", Digest: h("dbx")}, {Name: "separator", Digest: separatorDigests[0]},
		{Name: "db authority", Digest: h("authority " + keys)},
	}}
	q.SecureBoot.PCR7 = predict.Replay(q.SecureBoot.Events)
	bs := edit(measured(p, fw), func(e *[]ev) {
		for i, x := range q.SecureBoot.Events {
			typ := uint32(evEFIVariableDriverConfig)
			if i >= predict.PCR7Variables {
				typ = evEFIVariableAuthority
			}
			*e = append(*e, ev{7, typ, x.Digest})
		}
	})
	return &q, bs
}

func TestEvaluatePredicted_secure_boot(t *testing.T) {
	p := testPrediction("v1")
	predA, bootA := withPCR7(p, "site keys A", "firmware-a")
	predB, bootB := withPCR7(p, "site keys B", "firmware-a")
	_, bootC := withPCR7(p, "site keys C", "firmware-a")
	approvedA := &store.Machine{State: store.StateApproved, Policy: store.PolicyPredicted, Approved: bootA}
	tests := []struct {
		name     string
		observed *store.BootState
		pred     *predict.Prediction
		want     Decision
		reason   string
	}{
		{"keys_as_predicted", bootA, predA, Allow, "boot matches"},
		// The site changed keys and exported them: PCR 7 differs from
		// the approved value and equals the prediction.
		{"keys_changed_and_exported_no_reapproval", bootB, predB, Allow, "boot matches"},
		// The machine's keys differ from the exported ones, but are the
		// ones approved: the operator approved that firmware's diff.
		{"approved_keys_differ_from_export", bootA, predB, Allow, "boot matches"},
		{"keys_differ_from_export_and_approval", bootC, predB, NeedsReapproval, "PCR 7 (Secure Boot keys and signers) differs"},
		{"pcr7_not_quoted", func() *store.BootState { b := measured(p, "firmware-a"); delete(b.PCRs, 7); return b }(), predA, Refuse, "PCR 7 was not quoted"},
		// Without a PCR 7 prediction, PCR 7 stays pinned.
		{"not_predicted_stays_pinned", bootB, p, NeedsReapproval, "firmware boot state changed in PCR 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := EvaluateWith(approvedA, tt.observed, tt.pred)
			if v.Decision != tt.want || !strings.Contains(v.Reason, tt.reason) {
				t.Fatalf("got %s %q, want %s containing %q", v.Decision, v.Reason, tt.want, tt.reason)
			}
			if v.Decision == NeedsReapproval && !strings.Contains(v.Diff, "PCR 7 changed") {
				t.Errorf("diff does not show PCR 7:\n%s", v.Diff)
			}
		})
	}
	t.Logf("diff:\n%s", EvaluateWith(approvedA, bootC, predB).Diff)
	// The diff sets the predicted events against the measured ones.
	v := EvaluateWith(approvedA, bootC, predB)
	if !strings.Contains(v.Diff, "- ") || !strings.Contains(v.Diff, "predicted db") || !strings.Contains(v.Diff, "+ ") {
		t.Errorf("diff does not name the predicted db event:\n%s", v.Diff)
	}
}
