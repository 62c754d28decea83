// Package eventlog verifies a TCG2 (crypto-agile) event log against quoted
// sha256 PCR values and returns the events it proves.
//
// Parsing and replay are done by github.com/google/go-attestation/attest;
// only the events its Verify returns are trusted. Because that replay skips
// PCRs that have no events, Verify adds a coverage rule: a quoted PCR with a
// non-zero value must have at least one verified event. PCR 15 must be zero:
// the agent extends it after unsealing its credential, so a non-zero PCR 15
// means a credential was already released during this boot.
//
// What digests prove: replay proves each event's digest, never its type.
// For four event types the TCG PC Client Platform Firmware Profile defines
// the digest as the hash of the event data, and Verify refuses the log
// (ErrEventData) when it is not, so an event the log reports with one of
// these types has proven data (hence a proven Description):
//
//   - EV_SEPARATOR, except an error separator (data arbitrary by spec) and
//     SeaBIOS before 1.15, which logs it without data
//   - EV_ACTION (SeaBIOS: "Calling INT 19h", ...)
//   - EV_EFI_ACTION ("Calling EFI Application from Boot Option", ...)
//   - EV_EFI_VARIABLE_DRIVER_CONFIG: the whole UEFI_VARIABLE_DATA (vendor
//     GUID, name and value of e.g. SecureBoot, PK, db)
//
// The sha256 digest may be SHA-256 of the data or, as SeaBIOS before 1.15
// logs it, SHA-1 of the data zero-padded. EV_S_CRTM_VERSION is left out:
// shipping firmware logs version strings that do not hash to the digest.
// The data of all other types (image loads, EV_EFI_VARIABLE_BOOT, tagged
// events, EV_IPL, ...) is not covered by the digest, and since the type is
// unproven a rewritten log may also present any event as one of those
// types with other data. So TypeName, and the Description of events of
// other types, serve operators reading diffs, never decisions.
//
// Verify never panics on arbitrary input and is safe for concurrent use.
package eventlog

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-attestation/attest"

	"github.com/sealroot/sealroot/wire"
)

// Limits on input from the network.
const (
	// MaxLogSize is the largest event log accepted.
	MaxLogSize = 1 << 20
	// MaxEvents is the largest number of events a log may hold. Real
	// firmware logs hold tens to a few hundred.
	MaxEvents = 2048
)

// Errors returned by Verify, for errors.Is.
var (
	// ErrEmptyLog means the log is empty or holds no events.
	ErrEmptyLog = errors.New("event log is empty")
	// ErrMalformed means the log could not be parsed, is too large, or has
	// no sha256 digests.
	ErrMalformed = errors.New("malformed event log")
	// ErrInvalidPCRs means the PCR list itself is unusable: a bad index, a
	// duplicate, or a digest that is not 32 bytes.
	ErrInvalidPCRs = errors.New("invalid PCR values")
	// ErrReplay means the log does not replay to a quoted PCR value.
	ErrReplay = errors.New("event log does not replay to the quoted PCRs")
	// ErrMissingEvents means a quoted PCR is non-zero but has no events.
	ErrMissingEvents = errors.New("event log has no events for a quoted PCR")
	// ErrAlreadyReleased means PCR 15 is not zero: a credential was
	// already released during this boot.
	ErrAlreadyReleased = errors.New("PCR 15 is not zero: a credential was already released this boot")
	// ErrEventData means an event of a type whose digest is the hash of
	// its data carries data that does not hash to its digest: the data
	// was rewritten after measurement.
	ErrEventData = errors.New("event data does not match its digest")
)

// Verify parses raw, replays it against pcrs (sha256 bank) and returns the
// verified events of the quoted PCRs, in log order.
func Verify(raw []byte, pcrs []wire.PCR) ([]Event, error) {
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, ErrEmptyLog
	}
	if len(raw) > MaxLogSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(raw), MaxLogSize)
	}
	for _, p := range pcrs {
		if p.Index == wire.ReleasePCR && !isZero(p.Digest) {
			return nil, ErrAlreadyReleased
		}
	}
	if n, _ := countEvents(raw, MaxEvents); n > MaxEvents {
		return nil, fmt.Errorf("%w: over %d events", ErrMalformed, MaxEvents)
	}
	all, verified, err := replay(raw, pcrs)
	if err != nil {
		return nil, err
	}
	if err := checkCoverage(verified, pcrs); err != nil {
		return nil, err
	}
	events := convert(all, verified)
	if err := checkEventData(verified, events); err != nil {
		return nil, err
	}
	return events, nil
}

func checkPCRs(pcrs []wire.PCR) error {
	var seen [24]bool
	for _, p := range pcrs {
		if p.Index < 0 || p.Index >= len(seen) {
			return fmt.Errorf("%w: PCR index %d", ErrInvalidPCRs, p.Index)
		}
		if seen[p.Index] {
			return fmt.Errorf("%w: PCR %d listed twice", ErrInvalidPCRs, p.Index)
		}
		seen[p.Index] = true
		if len(p.Digest) != sha256.Size {
			return fmt.Errorf("%w: PCR %d digest is %d bytes", ErrInvalidPCRs, p.Index, len(p.Digest))
		}
	}
	return nil
}

// replay runs go-attestation's parser and replay, converting any panic in
// them into ErrMalformed. It returns all parsed events (for sequence
// numbers) and the verified ones.
func replay(raw []byte, pcrs []wire.PCR) (all, verified []attest.Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			all, verified = nil, nil
			err = fmt.Errorf("%w: parser panic: %v", ErrMalformed, r)
		}
	}()
	el, err := attest.ParseEventLog(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !slices.Contains(el.Algs, attest.HashSHA256) {
		return nil, nil, fmt.Errorf("%w: no sha256 digests (algorithms %v)", ErrMalformed, el.Algs)
	}
	all = el.Events(attest.HashSHA256)
	if len(all) == 0 {
		return nil, nil, ErrEmptyLog
	}
	in := make([]attest.PCR, len(pcrs))
	for i, p := range pcrs {
		in[i] = attest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: crypto.SHA256}
	}
	verified, err = el.Verify(in)
	if err != nil {
		var re attest.ReplayError
		if errors.As(err, &re) {
			return nil, nil, fmt.Errorf("%w: PCR %s", ErrReplay, strings.Trim(fmt.Sprint(re.InvalidPCRs), "[]"))
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrReplay, err)
	}
	return all, verified, nil
}

// checkCoverage enforces that every non-zero quoted PCR has verified events.
// (A PCR with events cannot replay to zero, so the converse holds already.)
func checkCoverage(verified []attest.Event, pcrs []wire.PCR) error {
	var has [24]bool
	for _, e := range verified {
		if e.Index >= 0 && e.Index < len(has) {
			has[e.Index] = true
		}
	}
	for _, p := range pcrs {
		if !has[p.Index] && !isZero(p.Digest) {
			return fmt.Errorf("%w: PCR %d", ErrMissingEvents, p.Index)
		}
	}
	return nil
}

// convert turns verified events into Events. Sequence is the
// position in the log (the Spec ID header is 0), found by matching the
// verified events, which are in log order, against all parsed events.
// Events go-attestation synthesized to work around firmware bugs follow
// the log's last sequence number.
func convert(all, verified []attest.Event) []Event {
	out := make([]Event, 0, len(verified))
	j := 0
	for _, v := range verified {
		seq := -1
		for k := j; k < len(all); k++ {
			a := all[k]
			if a.Index == v.Index && a.Type == v.Type && bytes.Equal(a.Digest, v.Digest) && bytes.Equal(a.Data, v.Data) {
				seq, j = k+1, k+1
				break
			}
		}
		if seq < 0 {
			seq = len(all) + 1 + len(out)
		}
		out = append(out, Event{
			PCR:         v.Index,
			Sequence:    seq,
			Type:        uint32(v.Type),
			TypeName:    v.Type.String(),
			Digest:      slices.Clone(v.Digest),
			Description: Describe(uint32(v.Type), v.Data),
		})
	}
	return out
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
