package store

import "slices"

// PolicyPredicted pins the firmware PCRs at approval and checks the boot
// PCRs (4, 11, 12) against predictions computed from the artifacts the
// server serves (server/predict), so image updates need no re-approval.
const PolicyPredicted Policy = "predicted"

// Policies lists every policy an operator may choose.
var Policies = []Policy{PolicyPinned, PolicyPredicted, PolicyIdentityOnly}

// Valid reports whether p is a known policy; empty means the default
// (PolicyPinned).
func (p Policy) Valid() bool {
	return p == "" || slices.Contains(Policies, p)
}
