package iscsi

import (
	"crypto/subtle"
	"fmt"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// CHAP holds the credentials of a CHAP login (RFC 7143 section 12.1.3,
// MD5 only). Secrets never leave the process: they are not logged and not
// passed to the kernel.
type CHAP struct {
	// User and Secret authenticate the initiator to the target.
	User, Secret string
	// TargetUser and TargetSecret, when TargetSecret is set, make the
	// login mutual: the initiator challenges the target and refuses the
	// login unless the target proves it knows TargetSecret.
	TargetUser, TargetSecret string
}

func (c *CHAP) mutual() bool { return c != nil && c.TargetSecret != "" }

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
