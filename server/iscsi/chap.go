package iscsi

import (
	"crypto/subtle"
	"fmt"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// MinChallengeLength is the length of the challenges the target sends
// and the least it accepts from an initiator for mutual CHAP.
const MinChallengeLength = 16

const maxChallengeLength = 1024

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
