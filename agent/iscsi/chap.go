package iscsi

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
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

// chapResponse computes MD5(id || secret || challenge) (RFC 1994 section 4.1).
func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// decodeBinary decodes an iSCSI binary value: 0x hex or 0b base64
// (RFC 7143 section 6.1).
func decodeBinary(s string) ([]byte, error) {
	if len(s) < 3 {
		return nil, fmt.Errorf("%w: short binary value", ErrLoginProtocol)
	}
	var b []byte
	var err error
	switch strings.ToLower(s[:2]) {
	case "0x":
		v := s[2:]
		if len(v)%2 == 1 {
			v = "0" + v
		}
		b, err = hex.DecodeString(v)
	case "0b":
		b, err = base64.StdEncoding.DecodeString(s[2:])
	default:
		return nil, fmt.Errorf("%w: binary value without 0x or 0b prefix", ErrLoginProtocol)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: binary value: %v", ErrLoginProtocol, err)
	}
	return b, nil
}

func encodeBinary(b []byte) string { return "0x" + hex.EncodeToString(b) }

func equalConstantTime(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
