package pdu

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// DecodeBinary decodes a binary text value: 0x hex or 0b base64
// (RFC 7143 section 6.1). Errors wrap ErrMalformedText.
func DecodeBinary(s string) ([]byte, error) {
	if len(s) < 3 {
		return nil, fmt.Errorf("%w: short binary value", ErrMalformedText)
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
		return nil, fmt.Errorf("%w: binary value without 0x or 0b prefix", ErrMalformedText)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: binary value: %v", ErrMalformedText, err)
	}
	return b, nil
}

// EncodeBinary encodes b as a 0x hex text value.
func EncodeBinary(b []byte) string { return "0x" + hex.EncodeToString(b) }

// CHAPResponse computes MD5(id || secret || challenge), the CHAP_R of
// CHAP_A=5 (RFC 1994 section 4.1).
func CHAPResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}
