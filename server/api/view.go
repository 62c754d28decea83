package api

import (
	"slices"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// The types below are the admin API's view of sealroot's state: what the
// routes answer and what `sealroot ... --json` prints. They are not the
// stored records (package store): the server converts its records into
// them, so the store's schema can change while these JSON shapes stay.
// Fields are only ever added; a field's name, type and meaning do not
// change. Binary values are base64 (encoding/json []byte), times RFC 3339.

// State is a machine's enrollment state.
type State string

// Machine states.
const (
	StatePending         State = "pending"          // seen, not yet approved
	StateApproved        State = "approved"         // boot state pinned, credentials released
	StateNeedsReapproval State = "needs-reapproval" // boot state changed since approval
	StateRevoked         State = "revoked"          // refused for good
)

// Policy names how a machine's boot state is judged.
type Policy string

// Policies an operator may choose. "" means PolicyPinned.
const (
	PolicyPinned       Policy = "pinned"        // PCRs pinned at approval
	PolicyPredicted    Policy = "predicted"     // firmware PCRs pinned, boot PCRs predicted from served artifacts
	PolicyIdentityOnly Policy = "identity-only" // TPM identity only; boot state not checked
)

// Policies lists every policy an operator may choose.
var Policies = []Policy{PolicyPinned, PolicyPredicted, PolicyIdentityOnly}

// Valid reports whether p is a known policy; empty means the default
// (PolicyPinned).
func (p Policy) Valid() bool {
	return p == "" || slices.Contains(Policies, p)
}

// Machine is one enrolled machine, as GET /v1/machines/{ref} answers it.
//
//	{"id": "<64 hex>", "name": "web-1", "state": "approved",
//	 "ek_public": "<base64>", "ek_cert": "<base64>", "ak_public": "<base64>",
//	 "ek_cert_status": "verified (from TPM NV, issuer \"CN=...\")",
//	 "hints": {...}, "policy": "pinned",
//	 "approved": {BootState}, "reported": {BootState}, "diff": "...",
//	 "unmeasured": "boot-measurement: ...",
//	 "root": {"kind": "iscsi", "params": {...}}, "group": "lab",
//	 "reset_count": 3, "restart_count": 0,
//	 "first_seen": "...", "last_seen": "...", "last_address": "10.0.0.5:1234",
//	 "boot_count": 7, "reason": "..."}
type Machine struct {
	// ID is the hex SHA-256 of the EK public area (wire.MachineID).
	ID    string `json:"id"`
	Name  string `json:"name"`
	State State  `json:"state"`

	// EKPublic is the EK public area (TPMT_PUBLIC); EKCert the EK
	// certificate (DER) when the machine sent one; AKPublic the
	// attestation key's public area.
	EKPublic []byte `json:"ek_public"`
	EKCert   []byte `json:"ek_cert,omitempty"`
	AKPublic []byte `json:"ak_public"`
	// EKCertStatus is the outcome of the EK certificate check at the last
	// attestation: "verified (from ..., issuer ...)" or "not verified: why".
	EKCertStatus string `json:"ek_cert_status,omitempty"`
	// Hints are what the agent said about itself (unverified).
	Hints wire.Hints `json:"hints"`

	Policy Policy `json:"policy"`
	// Approved is the boot state pinned at approval; absent until approved.
	Approved *BootState `json:"approved,omitempty"`
	// Reported is the last verified boot state of a pending or
	// needs-reapproval machine; approval pins it.
	Reported *BootState `json:"reported,omitempty"`
	// Diff is the readable event diff that put the machine in
	// needs-reapproval.
	Diff string `json:"diff,omitempty"`
	// Unmeasured is set when the approved boot state (else the reported
	// one) does not measure the initramfs and the kernel command line:
	// the refusal, "<check>: <reason>", that the server gives such boots
	// under every policy but identity-only.
	Unmeasured string `json:"unmeasured,omitempty"`
	// Root is the machine's own root plan; when Group is set, the
	// group's root applies instead.
	Root  wire.RootPlan `json:"root"`
	Group string        `json:"group,omitempty"`
	// Menu is the machine's own boot menu; nil for its group's, if any.
	Menu *Menu `json:"menu,omitempty"`

	// ResetCount and RestartCount are the TPM clock counters of the last
	// accepted quote.
	ResetCount   uint32 `json:"reset_count"`
	RestartCount uint32 `json:"restart_count"`

	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	LastAddress string    `json:"last_address,omitempty"`
	// BootCount counts the credentials released to the machine.
	BootCount uint64 `json:"boot_count"`
	// Home is the server whose storage keeps the machine's root, when
	// several servers share the store; "" for one server or none yet.
	Home string `json:"home,omitempty"`
	// Reason is why the machine was revoked or needs reapproval.
	Reason string `json:"reason,omitempty"`
	// History is the machine's last attestation attempts, oldest first,
	// whatever their outcome.
	History []BootAttempt `json:"history,omitempty"`
}

// LastAttempt returns the machine's newest attempt, or nil.
func (m *Machine) LastAttempt() *BootAttempt {
	if len(m.History) == 0 {
		return nil
	}
	return &m.History[len(m.History)-1]
}

// BootAttempt is one attestation attempt of a machine.
//
//	{"time": "...", "server": "sr-1", "remote": "10.0.0.5:4242",
//	 "outcome": "refused", "check": "event-log", "reason": "...",
//	 "agent_version": "0.3.0", "duration_ms": 41}
type BootAttempt struct {
	Time   time.Time `json:"time"`
	Server string    `json:"server,omitempty"` // the server that decided
	Remote string    `json:"remote,omitempty"` // the agent's source address
	// Outcome is "allowed", "pending", "needs-reapproval", "refused" or
	// "revoked"; Check names the check that decided it.
	Outcome      string `json:"outcome"`
	Check        string `json:"check,omitempty"`
	Reason       string `json:"reason,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"` // as the agent said (unverified)
	// DurationMillis is the time from the agent's hello to the decision.
	DurationMillis int64 `json:"duration_ms"`
	// Stages are the agent's own step timings of the boot this attempt
	// allowed, from its boot report (unverified); Failed and Error name
	// a step that failed after attestation.
	Stages []StageTiming `json:"stages,omitempty"`
	Failed string        `json:"failed,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// AuditEntry is one audit record, as GET /v1/audit and GET /v1/events
// answer it.
//
//	{"time": "...", "actor": "server", "remote": "10.0.0.5:4242",
//	 "machine_id": "<64 hex>", "action": "attest", "outcome": "refused",
//	 "check": "event-log", "reason": "..."}
type AuditEntry struct {
	Time time.Time `json:"time"`
	// Actor is "server" for the server's own decisions and
	// "operator:<uid>" for operator actions.
	Actor     string `json:"actor"`
	Remote    string `json:"remote,omitempty"`
	MachineID string `json:"machine_id,omitempty"`
	// Action is "attest", "approve", "revoke", "forget", "secret-set", ...
	Action string `json:"action"`
	// Outcome is "allowed", "pending", "needs-reapproval", "refused",
	// "revoked", "ok" or "error".
	Outcome string `json:"outcome"`
	Check   string `json:"check,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// BootState is a verified set of sha256 PCR values with the events that
// produced them.
//
//	{"pcrs": {"0": "<base64>", ...}, "events": [Event, ...], "at": "..."}
type BootState struct {
	PCRs   map[int][]byte `json:"pcrs"`
	Events []Event        `json:"events"`
	At     time.Time      `json:"at"`
}

// Event is one verified event-log entry.
//
//	{"pcr": 4, "seq": 12, "type": 2147483651,
//	 "type_name": "EV_EFI_BOOT_SERVICES_APPLICATION",
//	 "digest": "<base64 sha256>", "description": "..."}
type Event struct {
	PCR         int    `json:"pcr"`
	Sequence    int    `json:"seq"` // position in the log
	Type        uint32 `json:"type"`
	TypeName    string `json:"type_name"`
	Digest      []byte `json:"digest"`
	Description string `json:"description,omitempty"`
}

// Group is a named set of machines that share a root plan.
//
//	{"name": "lab", "root": {"kind": "volatile", "params": {...}}}
type Group struct {
	Name string        `json:"name"`
	Root wire.RootPlan `json:"root"`
}

// Image is a named base image.
//
//	{"name": "debian", "digest": "<hex sha256>", "size": 1073741824,
//	 "tree_digest": "<hex sha256>", "imported": "..."}
type Image struct {
	Name string `json:"name"`
	// Version numbers the name's imports from 1: NAME@vN names this
	// image for as long as it exists; NAME alone is the latest version.
	Version int `json:"version,omitempty"`
	// Latest reports whether this is the name's latest version.
	Latest bool `json:"latest,omitempty"`
	// UsedBy lists the root plans that name this version ("machine ID
	// NAME", "group NAME"; a plan naming NAME alone uses the latest)
	// and, as "roots", whether machines' roots or snapshots are made on
	// its base.
	UsedBy []string `json:"used_by,omitempty"`
	// Digest is the hex sha256 of the ext4 image.
	Digest string `json:"digest"`
	// Size is the image size in bytes.
	Size int64 `json:"size"`
	// TreeDigest is the hex sha256 of the unpacked tree.
	TreeDigest string    `json:"tree_digest"`
	Imported   time.Time `json:"imported"`
}

// Snapshot is one saved root of a machine.
//
//	{"name": "before-debian-v2", "base": "<hex sha256>", "image": "debian@v1",
//	 "created": "...", "size": 1048576}
type Snapshot struct {
	Name string `json:"name"`
	// Base is the digest of the base the snapshot was made on; Image is
	// the image version of that base, "" when no version names it.
	Base    string    `json:"base"`
	Image   string    `json:"image,omitempty"`
	Created time.Time `json:"created"`
	// Size is the bytes the snapshot takes on the server's disk.
	Size int64 `json:"size"`
}

// Upgrade is what moving one machine's root to an image version did.
//
//	{"machine": "<id>", "from": "debian@v1", "to": "debian@v2", "kept_as": "before-debian-v2"}
type Upgrade struct {
	Machine string `json:"machine"`
	// From and To are image versions (or base digests no version names).
	From string `json:"from,omitempty"`
	To   string `json:"to"`
	// KeptAs is the snapshot holding the old root; rolling back to it
	// returns the machine to its old base with its changes.
	KeptAs string `json:"kept_as,omitempty"`
	// Skipped says why nothing was done ("already on ...", "no root yet").
	Skipped string `json:"skipped,omitempty"`
}

// Rollout is what moving a group to an image version did.
type Rollout struct {
	Group string `json:"group"`
	Image string `json:"image"`
	// Upgraded lists each member considered, in machine ID order.
	Machines []Upgrade `json:"machines"`
	// Remaining counts the members a canary rollout left on their old
	// versions.
	Remaining int `json:"remaining"`
	// GroupRoot is the group's root plan after the rollout: set to the
	// version once every member has it (not for a canary or a subset).
	GroupRoot wire.RootPlan `json:"group_root"`
	// DryRun reports that nothing was done: Machines say what would be.
	DryRun bool `json:"dry_run,omitempty"`
}
