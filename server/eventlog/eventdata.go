package eventlog

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"

	"github.com/google/go-attestation/attest"
)

// Event types whose digest the TCG PC Client Platform Firmware Profile
// defines as the hash of the event data (PFP 1.05, 10.4.1), and which
// firmware in the field measures that way.
const (
	evSeparator = 0x00000004
	evAction    = 0x00000005
	evEFIAction = 0x80000007
	// evEFIVariableDriverConfig (describe.go): the whole UEFI_VARIABLE_DATA.
)

// dataBound reports whether typ is an event type whose data Verify checks
// against its digest. EV_S_CRTM_VERSION is left out on purpose: shipping
// firmware (Dell PowerEdge XR4520c) logs a version string whose hash is not
// the digest. EV_EFI_VARIABLE_BOOT is left out because edk2 hashes only the
// variable's value for it.
func dataBound(typ uint32) bool {
	switch typ {
	case evSeparator, evAction, evEFIAction, evEFIVariableDriverConfig:
		return true
	}
	return false
}

// Separator digests that carry no proof of the event data: the spec lets
// an error separator (digest of the UINT32 1) log arbitrary data.
var errorSeparatorDigests = [][]byte{
	sum256([]byte{1, 0, 0, 0}),
	sum256([]byte{0, 0, 0, 1}),
}

func sum256(b []byte) []byte {
	d := sha256.Sum256(b)
	return d[:]
}

// digestOf reports whether digest is the hash of data in the sha256 bank:
// SHA-256(data), or SHA-1(data) zero-padded to 32 bytes, which SeaBIOS
// before 1.15 put in every bank. Both bind data: the second would need a
// SHA-1 second preimage to forge.
func digestOf(digest, data []byte) bool {
	if bytes.Equal(digest, sum256(data)) {
		return true
	}
	s1 := sha1.Sum(data)
	padded := make([]byte, sha256.Size)
	copy(padded, s1[:])
	return bytes.Equal(digest, padded)
}

// checkEventData refuses a verified event of a data-bound type whose data
// is not what its digest measured: replay proves only digests, so without
// this an attacker could rewrite, say, an EV_EFI_ACTION string an operator
// reads in a diff. events are the
// verified ones converted, index for index.
func checkEventData(verified []attest.Event, events []Event) error {
	for i, v := range verified {
		if !dataMatches(v) {
			e := events[i]
			return fmt.Errorf("%w: PCR %d event %d (%s)", ErrEventData, e.PCR, e.Sequence, e.TypeName)
		}
	}
	return nil
}

// dataMatches reports whether e's data passes the rule of its type; events
// of other types always pass.
func dataMatches(e attest.Event) bool {
	typ := uint32(e.Type)
	switch {
	case !dataBound(typ), digestOf(e.Digest, e.Data):
		return true
	case typ == evSeparator:
		return separatorExempt(e)
	}
	return false
}

// separatorExempt covers the separators the spec or real firmware log
// without their data: SeaBIOS before 1.15 logs no data at all (nothing to
// misread), and an error separator's data is arbitrary by definition.
func separatorExempt(e attest.Event) bool {
	if len(e.Data) == 0 {
		return true
	}
	for _, d := range errorSeparatorDigests {
		if bytes.Equal(e.Digest, d) {
			return true
		}
	}
	return false
}
