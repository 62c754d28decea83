package attest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/policy"
	"github.com/sealroot/sealroot/server/seal"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// DefaultPCRs is the sha256 PCR selection every quote covers: firmware and
// boot loader (0-9), the unified kernel image (11-13), shim (14), and PCR 15,
// which must be zero until the agent extends it after unsealing. PCR 10
// (IMA) is left out: its events are not in the firmware log.
var DefaultPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15}

// Secrets returns a machine's decrypted secrets for the credential payload.
type Secrets interface {
	PlainSecrets(ctx context.Context, machineID string) (map[string][]byte, error)
}

// Failure is a refused attestation: Check names the check that failed (for
// the audit log and the agent's console), Reason is safe to show the agent.
type Failure struct {
	Check  string
	Reason string
	Err    error
}

func (f *Failure) Error() string { return fmt.Sprintf("%s: %s", f.Check, f.Reason) }
func (f *Failure) Unwrap() error { return f.Err }

func fail(check string, err error) *Failure {
	return &Failure{Check: check, Reason: err.Error(), Err: err}
}

// exchange is the server's state for one attestation on one connection.
// Its nonce and activation secret live only here, so each is single use.
type exchange struct {
	s        *Server
	remote   string
	exporter []byte
	started  time.Time

	hello     *wire.Hello
	machineID string
	keys      *evidence.Keys // the Hello's EK and AK, parsed
	// ekCert is the EK certificate (from NV or ekCerts) and ekCertStatus
	// the outcome of its check, for the machine's record.
	ekCert       []byte
	ekCertStatus string
	machine      *store.Machine // nil for an unknown machine
	nonce        []byte
	secret       []byte
	pcrs         []int
	done         bool

	// src and st are the agent's source address and stream; slotted
	// reports whether x holds its exchange slots (see takeSlots), which
	// it gives up while it waits for a person (askPerson).
	src     netip.Addr
	st      stream
	slotted bool
	// slottedAt is when x took its slots: how long it held them teaches
	// the server's pacer (busy agents' retry-after).
	slottedAt time.Time
	// retryAfter is when a source refused as busy should come back.
	retryAfter time.Duration
	// user is the user whose per-user root x claimed (see perUser).
	user string

	// The boot menu offered to an allowed machine (see menu.go): the
	// menu, the root plan its image entries boot, the judged state, and
	// the root plan chosen.
	menu     *wire.Menu
	menuRoot wire.RootPlan
	allowed  *allowed
	chosen   *wire.RootPlan

	endMu   sync.Mutex // guards the fields below; see live.go
	endedBy *Failure   // set by end: the exchange is refused
	cancel  context.CancelFunc
	wake    func() // wakes a blocked read
}

func (s *Server) newExchange(remote string, exporter []byte) *exchange {
	return &exchange{s: s, remote: remote, exporter: exporter, pcrs: s.pcrs, started: time.Now()}
}

// start handles Hello and returns a Challenge or a final Status.
func (x *exchange) start(ctx context.Context, h *wire.Hello) (wire.Message, error) {
	x.hello = h
	x.machineID = wire.MachineID(h.EKPublic)
	keys, err := x.s.keys.parse(x.machineID, h.EKPublic, h.AKPublic)
	if err != nil {
		if errors.Is(err, evidence.ErrBadEK) {
			return nil, fail("ek-public", err)
		}
		return nil, fail("ak-public", err)
	}
	x.keys = keys
	if x.ekCert, x.ekCertStatus, err = x.s.checkEKCert(ctx, keys.EKKey(), h); err != nil {
		return nil, err
	}
	// Registered before the record is read: a revoke that commits after
	// the read ends this exchange.
	x.s.live.add(x)
	m, err := x.s.store.MachineRecord(ctx, x.machineID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("load machine: %w", err)
	default:
		x.machine = m
	}
	if x.machine != nil && x.machine.State == store.StateRevoked {
		x.done = true
		x.s.withdraw(x.machineID)
		x.s.record(x, "revoked", "enrollment", "machine is revoked: "+x.machine.Reason)
		return &wire.Status{State: wire.StateRevoked, MachineID: x.machineID, Reason: revokedReason(x.machine)}, nil
	}
	blob, encSecret, secret, err := keys.NewActivation(x.s.rand)
	if err != nil {
		return nil, fail("activation", err)
	}
	x.secret = secret
	x.nonce = make([]byte, wire.NonceSize)
	if _, err := io.ReadFull(x.s.rand, x.nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return &wire.Challenge{
		MachineID:       x.machineID,
		CredentialBlob:  blob,
		EncryptedSecret: encSecret,
		Nonce:           x.nonce,
		PCRs:            x.pcrs,
	}, nil
}

// revokedReason is the operator's reason, as the agent shows it.
func revokedReason(m *store.Machine) string {
	if m.Reason != "" {
		return m.Reason
	}
	return "no reason given"
}

// finish verifies Evidence and returns a Credential or a final Status.
func (x *exchange) finish(ctx context.Context, ev *wire.Evidence) (wire.Message, error) {
	x.done = true
	observed, info, err := x.verify(ev)
	if err != nil {
		return nil, err
	}
	if x.machine != nil && info.ResetCount < x.machine.ResetCount {
		return nil, fail("reset-count", fmt.Errorf("TPM reset count %d is below the last accepted %d: replayed or rolled-back quote",
			info.ResetCount, x.machine.ResetCount))
	}
	if x.machine == nil {
		return x.enroll(ctx, observed)
	}
	switch x.machine.State {
	case store.StatePending, store.StateNeedsReapproval:
		return x.stillPending(ctx, observed)
	case store.StateApproved:
		return x.judge(ctx, observed, info)
	}
	return nil, fail("enrollment", fmt.Errorf("machine in state %q", x.machine.State))
}

// verify runs the evidence checks in their fixed order.
func (x *exchange) verify(ev *wire.Evidence) (*store.BootState, *evidence.QuoteInfo, error) {
	proofData := wire.ActivationProofData(x.nonce, x.exporter, x.machineID)
	if err := evidence.VerifyActivationProof(x.secret, ev.ActivationProof, proofData); err != nil {
		return nil, nil, fail("activation", err)
	}
	if !slices.Equal(pcrIndices(ev.PCRs), x.pcrs) {
		return nil, nil, fail("quote-pcrs", fmt.Errorf("PCRs %v do not match the requested selection %v", pcrIndices(ev.PCRs), x.pcrs))
	}
	extra := wire.QualifyingData(x.nonce, x.exporter, x.machineID)
	info, err := x.keys.VerifyQuote(ev.Quote, ev.Signature, extra, ev.PCRs)
	if err != nil {
		return nil, nil, fail(quoteCheck(err), err)
	}
	var events []eventlog.Event
	if x.machine != nil { // enrolled: remember the log it boots with
		events, err = x.s.logs.verify(x.machineID, ev.EventLog, ev.PCRs)
	} else {
		events, err = eventlog.Verify(ev.EventLog, ev.PCRs)
	}
	if err != nil {
		return nil, nil, fail("event-log", err)
	}
	if x.s.requireSB {
		if err := checkSecureBoot(ev); err != nil {
			return nil, nil, err
		}
	}
	pcrs := make(map[int][]byte, len(ev.PCRs))
	for _, p := range ev.PCRs {
		pcrs[p.Index] = p.Digest
	}
	return &store.BootState{PCRs: pcrs, Events: events, At: x.s.now()}, info, nil
}

func quoteCheck(err error) string {
	switch {
	case errors.Is(err, evidence.ErrSignature):
		return "quote-signature"
	case errors.Is(err, evidence.ErrExtraData):
		return "quote-extra-data"
	case errors.Is(err, evidence.ErrPCRDigest), errors.Is(err, evidence.ErrPCRSelection):
		return "quote-pcrs"
	}
	return "quote"
}

func pcrIndices(pcrs []wire.PCR) []int {
	out := make([]int, len(pcrs))
	for i, p := range pcrs {
		out[i] = p.Index
	}
	return out
}

// enroll records an unknown machine as pending.
func (x *exchange) enroll(ctx context.Context, observed *store.BootState) (wire.Message, error) {
	now := x.s.now()
	m := &store.Machine{
		ID:           x.machineID,
		Name:         defaultName(x.machineID),
		State:        store.StatePending,
		EKPublic:     x.hello.EKPublic,
		EKCert:       x.ekCert,
		EKCertStatus: x.ekCertStatus,
		AKPublic:     x.hello.AKPublic,
		Hints:        x.hello.Hints,
		Policy:       store.PolicyPinned,
		Reported:     observed,
		Root:         wire.RootPlan{Kind: wire.RootNone},
		FirstSeen:    now,
		LastSeen:     now,
		LastAddress:  x.remote,
	}
	if err := x.s.store.CreateMachine(ctx, m); err != nil {
		// Two agents with the same EK raced; the other one enrolled it.
		if existing, err2 := x.s.store.MachineRecord(ctx, x.machineID); err2 == nil {
			x.machine = existing
			return x.stillPending(ctx, observed)
		}
		return nil, fmt.Errorf("enroll machine: %w", err)
	}
	x.s.record(x, "pending", "", "new machine enrolled as pending")
	x.s.logger.Info("new machine waiting for approval", "machine", x.machineID, "remote", x.remote)
	return x.pendingStatus(wire.StatePending, ""), nil
}

func defaultName(id string) string { return "m-" + id[:12] }

func (x *exchange) pendingStatus(state wire.State, diff string) *wire.Status {
	reason := "waiting for approval"
	if state == wire.StateNeedsReapproval {
		reason = "boot state changed since approval: waiting for re-approval"
	}
	return &wire.Status{
		State:            state,
		MachineID:        x.machineID,
		Fingerprint:      x.machineID,
		Reason:           reason,
		Diff:             diff,
		RetryAfterMillis: x.s.retryAfter.Milliseconds(),
	}
}

// stillPending refreshes what a pending machine reported.
func (x *exchange) stillPending(ctx context.Context, observed *store.BootState) (wire.Message, error) {
	m, err := x.commit(ctx, func(m *store.Machine) error {
		if m.State != store.StatePending && m.State != store.StateNeedsReapproval {
			return staleRecord(m)
		}
		m.Reported = observed
		m.Hints = x.hello.Hints
		m.AKPublic = x.hello.AKPublic
		m.LastSeen = x.s.now()
		m.LastAddress = x.remote
		m.EKCert, m.EKCertStatus = x.ekCert, x.ekCertStatus
		return nil
	})
	if err != nil {
		return nil, err
	}
	if m.State == store.StateNeedsReapproval {
		x.s.record(x, "needs-reapproval", "policy", "boot state changed since approval")
		return x.pendingStatus(wire.StateNeedsReapproval, m.Diff), nil
	}
	x.s.record(x, "pending", "", "waiting for approval")
	return x.pendingStatus(wire.StatePending, ""), nil
}

// judge applies policy to an approved machine and seals its credential.
func (x *exchange) judge(ctx context.Context, observed *store.BootState, info *evidence.QuoteInfo) (wire.Message, error) {
	v := x.evaluate(ctx, observed)
	switch v.Decision {
	case policy.Allow:
		m, err := x.offer(ctx, &allowed{observed: observed, info: info, verdict: v})
		switch {
		case err != nil:
			return nil, err
		case m != nil:
			return x.askMenu(ctx, m)
		}
		return x.release(ctx, observed, info, v)
	case policy.NeedsReapproval:
		_, err := x.commit(ctx, func(m *store.Machine) error {
			m.State = store.StateNeedsReapproval
			m.Reported = observed
			m.Diff = v.Diff
			m.LastSeen = x.s.now()
			m.LastAddress = x.remote
			m.EKCert, m.EKCertStatus = x.ekCert, x.ekCertStatus
			return nil
		})
		if err != nil {
			return nil, err
		}
		x.s.withdraw(x.machineID)
		x.s.record(x, "needs-reapproval", "policy", v.Reason)
		x.s.logger.Warn("boot state changed: machine needs re-approval", "machine", x.machineID, "reason", v.Reason)
		return x.pendingStatus(wire.StateNeedsReapproval, v.Diff), nil
	}
	return nil, &Failure{Check: cmp.Or(v.Check, "policy"), Reason: v.Reason}
}

// release seals the credential for an approved machine in a verified state.
func (x *exchange) release(ctx context.Context, observed *store.BootState, info *evidence.QuoteInfo, v policy.Verdict) (_ wire.Message, err error) {
	if _, err := x.perUser(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			x.dropClaim()
		}
	}()
	if err := x.current(ctx); err != nil {
		return nil, err
	}
	secrets, err := x.s.secrets.PlainSecrets(ctx, x.machineID)
	if err != nil {
		return nil, auditFailure(fmt.Errorf("load secrets: %w", err))
	}
	plan, root, rootSecrets, err := x.prepare(ctx)
	if err != nil {
		clear(secrets)
		return nil, err
	}
	files, err := x.files(ctx, plan)
	if err != nil {
		clear(secrets)
		clear(rootSecrets)
		x.s.withdraw(x.machineID) // the tunnel peer and root just prepared
		return nil, err
	}
	secrets = mergeSecrets(secrets, rootSecrets)
	payload, err := json.Marshal(&wire.Payload{
		MachineID:   x.machineID,
		MachineName: x.machine.Name,
		Root:        root,
		Secrets:     secrets,
		Tunnel:      plan,
		Files:       files,
	})
	clear(secrets) // the plaintext lives on only inside payload
	clear(rootSecrets)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	defer clear(payload)
	sealTo := make([]wire.PCR, 0, len(observed.PCRs))
	for _, i := range x.pcrs {
		sealTo = append(sealTo, wire.PCR{Index: i, Digest: observed.PCRs[i]})
	}
	cred, err := seal.SealTo(x.s.rand, x.keys.EKEncapsulation(), sealTo, payload, wire.CredentialAAD(x.exporter, x.machineID))
	if err != nil {
		if plan != nil {
			x.s.dropTunnel(x.machineID)
		}
		return nil, fmt.Errorf("seal credential: %w", err)
	}
	// The release is decided here, against the current record, in the
	// transaction that records it (with its boot history entry, when the
	// server keeps one); then audited before the credential leaves.
	var allowed Attempt
	_, err = x.commitRelease(ctx, func(m *store.Machine) error {
		if info.ResetCount < m.ResetCount {
			return fail("reset-count", fmt.Errorf("TPM reset count %d is below the last accepted %d: replayed or rolled-back quote",
				info.ResetCount, m.ResetCount))
		}
		// One credential per boot: when a release of this very boot (same
		// TPM reset and restart counts) committed after this exchange read
		// the record (an exchange racing this one, here or on another
		// server sharing the store), that one won. A later attestation of
		// the same boot, begun after that release, is still answered.
		if x.machine != nil && m.BootCount != x.machine.BootCount &&
			info.ResetCount == m.ResetCount && info.RestartCount == m.RestartCount {
			return fail("boot-released", fmt.Errorf("this boot (TPM reset count %d) was released a credential by another attestation while this one ran: one credential per boot",
				info.ResetCount))
		}
		m.ResetCount = max(m.ResetCount, info.ResetCount)
		m.RestartCount = info.RestartCount
		allowed = x.s.attempt(x, "allowed", "", allowedReason(v.Reason, x.user))
		m.BootCount++
		m.LastSeen = allowed.Time
		m.LastAddress = x.remote
		m.Hints = x.hello.Hints
		m.EKCert, m.EKCertStatus = x.ekCert, x.ekCertStatus
		if x.s.history != nil {
			allowed.InHistory = true
			m.AddAttempt(x.s.history.Entry(allowed))
		}
		return nil
	})
	if err == nil {
		err = auditFailure(x.s.recordAttempt(x, allowed))
	}
	if err != nil {
		x.s.withdraw(x.machineID)
		return nil, err
	}
	return cred, nil
}

// record writes one audit entry for the server's decision on x and tells
// the observers; audit failures are logged, never hidden, and returned.
func (s *Server) record(x *exchange, outcome, check, reason string) error {
	return s.recordAttempt(x, s.attempt(x, outcome, check, reason))
}

// recordAttempt is record of an attempt decided earlier (a release's, in
// its transaction).
func (s *Server) recordAttempt(x *exchange, a Attempt) error {
	err := s.audit.Record(audit.Entry{
		Time:      a.Time,
		Actor:     "server",
		Remote:    x.remote,
		MachineID: x.machineID,
		Action:    "attest",
		Outcome:   a.Outcome,
		Check:     a.Check,
		Reason:    a.Reason,
	})
	if err != nil {
		s.logger.Error("audit log write failed", "error", err)
	}
	// An allowed outcome without its record is no release: the refusal
	// that follows is what the observers hear (the history holds both
	// when the release's transaction wrote the allowed attempt: the
	// release was recorded, then refused).
	if err == nil || a.Outcome != "allowed" {
		s.observe(a)
	}
	return err
}

// decidingCheck names the check that decided an outcome no failed check
// explains: enrollment for a pending machine, policy for the rest.
func decidingCheck(outcome string) string {
	if outcome == "pending" {
		return "enrollment"
	}
	return "policy"
}

// checkSecureBoot refuses evidence whose event log does not prove UEFI
// Secure Boot on: the SecureBoot variable as measured into PCR 7.
func checkSecureBoot(ev *wire.Evidence) error {
	st, err := eventlog.SecureBoot(ev.EventLog, ev.PCRs)
	if err != nil {
		return fail("secure-boot", err)
	}
	if !st.Enabled {
		return fail("secure-boot", errors.New("Secure Boot is off (PCR 7: SecureBoot variable not 1) and the server requires it"))
	}
	return nil
}
