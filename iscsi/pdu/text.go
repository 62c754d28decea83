package pdu

import (
	"bytes"
	"fmt"
)

// Text limits (RFC 7143 section 6.1: key names at most 63 bytes).
const (
	MaxKeys        = 128
	MaxKeyLength   = 63
	MaxValueLength = 8192
)

// KV is one key=value pair of Login or Text data.
type KV struct {
	Key, Value string
}

// ParseText parses NUL-terminated key=value pairs. Empty entries (runs
// of NULs, as some initiators pad) are skipped. Keys must be unique.
func ParseText(b []byte) ([]KV, error) {
	var kvs []KV
	seen := make(map[string]bool)
	for len(b) > 0 {
		entry, rest, _ := bytes.Cut(b, []byte{0})
		b = rest
		if len(entry) == 0 {
			continue
		}
		kv, err := parseEntry(entry)
		if err != nil {
			return nil, err
		}
		if seen[kv.Key] {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateKey, kv.Key)
		}
		if len(kvs) == MaxKeys {
			return nil, fmt.Errorf("%w: more than %d keys", ErrTextLimit, MaxKeys)
		}
		seen[kv.Key] = true
		kvs = append(kvs, kv)
	}
	return kvs, nil
}

func parseEntry(entry []byte) (KV, error) {
	k, v, ok := bytes.Cut(entry, []byte{'='})
	if !ok || len(k) == 0 {
		return KV{}, fmt.Errorf("%w: entry without key=value", ErrMalformedText)
	}
	if len(k) > MaxKeyLength || len(v) > MaxValueLength {
		return KV{}, fmt.Errorf("%w: key %d bytes, value %d bytes", ErrTextLimit, len(k), len(v))
	}
	for _, c := range k {
		if !keyChar(c) {
			return KV{}, fmt.Errorf("%w: byte %#x in key", ErrMalformedText, c)
		}
	}
	return KV{Key: string(k), Value: string(v)}, nil
}

func keyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '-' || c == '+' || c == '@' || c == '_'
}

// EncodeText renders pairs as NUL-terminated key=value entries.
func EncodeText(kvs []KV) []byte {
	var b []byte
	for _, kv := range kvs {
		b = append(b, kv.Key...)
		b = append(b, '=')
		b = append(b, kv.Value...)
		b = append(b, 0)
	}
	return b
}

// Lookup returns the value of key in kvs.
func Lookup(kvs []KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}
