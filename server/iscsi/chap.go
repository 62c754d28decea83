package iscsi

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
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

// chapResponse computes MD5(id || secret || challenge).
func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// decodeCHAPValue decodes a hex (0x) or base64 (0b) binary value.
func decodeCHAPValue(s string) ([]byte, error) {
	if len(s) < 3 {
		return nil, fmt.Errorf("%w: short binary value", ErrAuthFailed)
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
		return nil, fmt.Errorf("%w: binary value without 0x or 0b", ErrAuthFailed)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: binary value: %v", ErrAuthFailed, err)
	}
	return b, nil
}

func encodeCHAPValue(b []byte) string { return "0x" + hex.EncodeToString(b) }

// equalConstantTime compares a and b without revealing where they differ.
func equalConstantTime(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
