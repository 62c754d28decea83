// Package store keeps sealroot's server state: machines and their
// per-machine secrets (already encrypted by the caller). Store is the
// interface; Open returns the embedded bbolt implementation. A later
// networked store implements the same interface.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/wire"
)

// ErrNotFound is returned when a machine, secret or group does not exist.
var ErrNotFound = errors.New("not found")

// ErrGroupInUse is returned by DeleteGroup while machines are in the group.
var ErrGroupInUse = errors.New("group has machines")

// ErrBadGroupName is returned by PutGroup for a malformed name.
var ErrBadGroupName = errors.New("invalid group name: want 1-64 of [A-Za-z0-9._-], starting with a letter or digit")

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

// Policies. PolicyPinned is the default.
const (
	PolicyPinned       Policy = "pinned"        // PCRs pinned at approval
	PolicyIdentityOnly Policy = "identity-only" // TPM identity only; boot state not checked
)

// Machine is one machine's record. ID is the hex SHA-256 of the EK public
// area (TPMT_PUBLIC encoding): the machine's identity.
type Machine struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State State  `json:"state"`
	// Version changes (to a value never used before in this store) with
	// every change a release is decided on: State, Policy, Approved, Root,
	// Group, Name, Menu, the machine's secrets and its group's root and
	// menu, and the
	// files of the machine and of its group. A decision
	// taken on a record read earlier is committed only if the version is
	// still the one read (see attest). Set by the store; callers' changes
	// to it are ignored.
	Version uint64 `json:"version"`

	EKPublic []byte `json:"ek_public"`
	EKCert   []byte `json:"ek_cert,omitempty"`
	// EKCertStatus is the outcome of the EK certificate check at the last
	// attestation: "verified (...)" or "not verified: why".
	EKCertStatus string     `json:"ek_cert_status,omitempty"`
	AKPublic     []byte     `json:"ak_public"`
	Hints        wire.Hints `json:"hints"`

	Policy Policy `json:"policy"`
	// Approved is the boot state pinned at approval; nil until approved.
	Approved *BootState `json:"approved,omitempty"`
	// Reported is the last verified boot state a pending or
	// needs-reapproval machine reported; approval pins it.
	Reported *BootState `json:"reported,omitempty"`
	// Diff is the readable event diff that put the machine in
	// needs-reapproval.
	Diff string `json:"diff,omitempty"`
	// Root tells the agent what to mount, unless the machine is in a
	// group: then the group's root does.
	Root wire.RootPlan `json:"root"`
	// Group names the machine's group; "" for none.
	Group string `json:"group,omitempty"`
	// Menu is the machine's boot menu; nil for its group's, if any.
	Menu *Menu `json:"menu,omitempty"`

	// ResetCount and RestartCount are the TPM clock counters from the last
	// accepted quote; a quote whose ResetCount is lower is refused.
	ResetCount   uint32 `json:"reset_count"`
	RestartCount uint32 `json:"restart_count"`

	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	LastAddress string    `json:"last_address,omitempty"`
	BootCount   uint64    `json:"boot_count"` // credentials released
	Reason      string    `json:"reason,omitempty"`

	// History is the machine's last MaxHistory attestation attempts,
	// oldest first (by Time), whatever their outcome. It is
	// bookkeeping: changing it leaves Version alone, and it is stored
	// apart from the record (AddAttempts, UpdateMachineRecord), so an
	// attempt rewrites nothing else.
	History []BootAttempt `json:"history,omitempty"`
}

// MaxHistory is how many attempts Machine.History keeps.
const MaxHistory = 20

// BootAttempt is one attestation attempt of a machine, as decided.
type BootAttempt struct {
	Time   time.Time `json:"time"`
	Server string    `json:"server,omitempty"` // the server that decided
	Remote string    `json:"remote,omitempty"` // the agent's source address
	// Outcome is "allowed", "pending", "needs-reapproval", "refused",
	// "revoked" or "local-disk"; Check names the check that decided it, Reason says why.
	Outcome      string        `json:"outcome"`
	Check        string        `json:"check,omitempty"`
	Reason       string        `json:"reason,omitempty"`
	AgentVersion string        `json:"agent_version,omitempty"` // as the agent said (unverified)
	Duration     time.Duration `json:"duration,omitempty"`      // hello to decision
	// Stages are the agent's own step timings of the boot this attempt
	// allowed, as its boot report said (unverified); Failed and Error
	// name the step that failed after attestation, if one did.
	Stages []wire.StageTiming `json:"stages,omitempty"`
	Failed string             `json:"failed,omitempty"`
	Error  string             `json:"error,omitempty"`
}

// AddAttempt appends a to m.History, dropping the oldest attempts beyond
// MaxHistory.
func (m *Machine) AddAttempt(a BootAttempt) {
	m.History = append(m.History, a)
	if n := len(m.History) - MaxHistory; n > 0 {
		m.History = append([]BootAttempt(nil), m.History[n:]...)
	}
}

// Group is a named set of machines that share a root plan (a lab of
// volatile thin clients, say).
type Group struct {
	Name string        `json:"name"`
	Root wire.RootPlan `json:"root"`
	// Menu is the boot menu of the group's machines that have none of
	// their own; nil for none.
	Menu *Menu `json:"menu,omitempty"`
}

// Menu is a boot menu: the images a machine may boot, each as its own
// root over that image (see EffectiveMenu), and the local disk.
type Menu struct {
	Images    []string      `json:"images,omitempty"`
	LocalDisk bool          `json:"local_disk,omitempty"`
	Default   string        `json:"default"` // a wire menu entry ID
	Timeout   time.Duration `json:"timeout"`
}

// EffectiveMenu returns the boot menu m is offered: its own, else its
// group's, else nil.
func EffectiveMenu(ctx context.Context, st Store, m *Machine) (*Menu, error) {
	if m.Menu != nil || m.Group == "" {
		return m.Menu, nil
	}
	g, err := st.Group(ctx, m.Group)
	if err != nil {
		return nil, fmt.Errorf("machine %.12s is in group %q: %w", m.ID, m.Group, err)
	}
	return g.Menu, nil
}

// BootState is a verified set of PCR values with the events that produced them.
type BootState struct {
	PCRs   map[int][]byte   `json:"pcrs"` // sha256 bank
	Events []eventlog.Event `json:"events"`
	At     time.Time        `json:"at"`
}

// Store is the server's state. All methods are safe for concurrent use.
type Store interface {
	// Machine returns the machine with the given ID, or ErrNotFound.
	Machine(ctx context.Context, id string) (*Machine, error)
	// MachineVersion returns a machine's State and Version (what a
	// decision taken on an earlier read is checked against), or
	// ErrNotFound; cheaper than Machine.
	MachineVersion(ctx context.Context, id string) (State, uint64, error)
	// Machines returns every machine, sorted by ID.
	Machines(ctx context.Context) ([]*Machine, error)
	// CreateMachine stores a new machine; it fails if the ID exists.
	CreateMachine(ctx context.Context, m *Machine) error
	// UpdateMachine loads a machine, calls fn and stores the result
	// atomically; fn's error aborts the update and is returned. The
	// store sets Version when fn changed a decision field.
	UpdateMachine(ctx context.Context, id string, fn func(*Machine) error) (*Machine, error)
	// MachineRecord is Machine without the boot history (History nil):
	// what an attestation decides on.
	MachineRecord(ctx context.Context, id string) (*Machine, error)
	// UpdateMachineRecord is UpdateMachine for an update that does not
	// read the boot history, as an attestation's: fn gets History nil,
	// and the attempts fn adds to it (AddAttempt) are added to the stored
	// history in the same transaction, as AddAttempts adds them (a
	// release records its allowed attempt with no commit of its own).
	// The record returned has no history.
	UpdateMachineRecord(ctx context.Context, id string, fn func(*Machine) error) (*Machine, error)
	// DeleteMachine removes a machine and all its secrets.
	DeleteMachine(ctx context.Context, id string) error
	// AddAttempts adds each attempt to its machine's History (the last
	// MaxHistory), after every attempt not later than it, without
	// changing Version or any other field, in one transaction; it returns
	// the attempts of unknown machines.
	AddAttempts(ctx context.Context, attempts []MachineAttempt) ([]MachineAttempt, error)

	// PutSecret stores an encrypted secret for a machine. It and
	// DeleteSecret change the machine's Version.
	PutSecret(ctx context.Context, machineID, name string, ciphertext []byte) error
	// Secret returns an encrypted secret, or ErrNotFound.
	Secret(ctx context.Context, machineID, name string) ([]byte, error)
	// Secrets returns all encrypted secrets of a machine by name.
	Secrets(ctx context.Context, machineID string) (map[string][]byte, error)
	// DeleteSecret removes a secret, or returns ErrNotFound.
	DeleteSecret(ctx context.Context, machineID, name string) error

	// Group returns the group with the given name, or ErrNotFound.
	Group(ctx context.Context, name string) (*Group, error)
	// Groups returns every group, sorted by name.
	Groups(ctx context.Context) ([]*Group, error)
	// PutGroup creates or replaces a group; it changes the Version of
	// every machine in the group.
	PutGroup(ctx context.Context, g *Group) error
	// UpdateGroup applies fn to group name and stores the result, in one
	// transaction that gives every machine in the group a new Version,
	// so a change decided on the group (a root kept with a new menu, a
	// menu kept with a new root) never drops a concurrent one. fn gets
	// the stored group, or with found false a new Group{Name: name}
	// (return ErrNotFound from fn to refuse creating it); an error from
	// fn aborts the change and is returned. fn may run more than once
	// (the etcd store retries on a concurrent change): it must change
	// only its argument. A malformed name gives ErrBadGroupName.
	UpdateGroup(ctx context.Context, name string, fn func(g *Group, found bool) error) (*Group, error)
	// DeleteGroup removes a group; it fails with ErrGroupInUse while a
	// machine is in it, and with ErrNotFound if there is none.
	DeleteGroup(ctx context.Context, name string) error

	// FileStore keeps machines' and groups' files; deleting a machine or
	// group deletes its files.
	FileStore

	Close() error
}

// EffectiveRoot returns the root plan m mounts: its group's when it is in
// a group, else its own.
func EffectiveRoot(ctx context.Context, st Store, m *Machine) (wire.RootPlan, error) {
	if m.Group == "" {
		return m.Root, nil
	}
	g, err := st.Group(ctx, m.Group)
	if err != nil {
		return wire.RootPlan{}, fmt.Errorf("machine %.12s is in group %q: %w", m.ID, m.Group, err)
	}
	return g.Root, nil
}
