package iscsi

import (
	"crypto/subtle"
	"fmt"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// challengeLength is the size of the challenge sent to the target.
const challengeLength = 16

// maxChallengeLength bounds the target's challenge.
const maxChallengeLength = 1024

// decodeBinary decodes an iSCSI binary value; a malformed one is a login
// protocol error.
func decodeBinary(v string) ([]byte, error) {
	b, err := pdu.DecodeBinary(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLoginProtocol, err)
	}
	return b, nil
}

func equalConstantTime(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
