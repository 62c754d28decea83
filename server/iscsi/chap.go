package iscsi

import (
	"crypto/subtle"
	"fmt"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// CHAP holds the credentials of CHAP authentication (RFC 1994 with the
// iSCSI rules of RFC 7143 section 12.1.3). MD5 (CHAP_A=5) only.
type CHAP struct {
	// User and Secret authenticate the initiator to the target.
	User, Secret string
	// TargetUser and TargetSecret, when TargetSecret is set, make CHAP
	// mutual and required so: the initiator must challenge the target,
	// which answers with them.
	TargetUser, TargetSecret string
}

// MinChallengeLength is the length of the challenges the target sends
// and the least it accepts from an initiator for mutual CHAP.
const MinChallengeLength = 16

const maxChallengeLength = 1024

func (c *CHAP) mutual() bool { return c.TargetSecret != "" }

// decodeCHAPValue decodes a hex (0x) or base64 (0b) binary value; a
// malformed one fails authentication.
func decodeCHAPValue(v string) ([]byte, error) {
	b, err := pdu.DecodeBinary(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	return b, nil
}

// equalConstantTime compares a and b without revealing where they differ.
func equalConstantTime(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
