package eventlog

import (
	"bytes"
	"encoding/binary"
)

// countEvents walks the log's framing without decoding events and returns
// the number of events, stopping once it exceeds limit. It bounds the work
// handed to go-attestation, whose cost grows with the event count (its
// replay re-runs for each firmware workaround). ok is false if the framing
// is broken; the full parser then reports the error.
func countEvents(raw []byte, limit int) (n int, ok bool) {
	// TCG_PCR_EVENT: PCRIndex, EventType, SHA-1 digest, EventSize, Event.
	const v1Header = 4 + 4 + 20 + 4
	if len(raw) < v1Header {
		return 0, false
	}
	size := int(binary.LittleEndian.Uint32(raw[28:32]))
	if size > len(raw)-v1Header {
		return 0, false
	}
	first, rest := raw[v1Header:v1Header+size], raw[v1Header+size:]
	algs, agile := specIDAlgs(first)
	agile = agile && binary.LittleEndian.Uint32(raw[4:8]) == evNoAction
	if !agile {
		// SHA-1 log: fixed-size headers all the way.
		for n = 1; len(rest) > 0 && n <= limit; n++ {
			if len(rest) < v1Header {
				return n, false
			}
			size := int(binary.LittleEndian.Uint32(rest[28:32]))
			if size > len(rest)-v1Header {
				return n, false
			}
			rest = rest[v1Header+size:]
		}
		return n, true
	}
	for n = 0; len(rest) > 0 && n <= limit; n++ {
		var ok bool
		if rest, ok = skipEvent2(rest, algs); !ok {
			return n, false
		}
	}
	return n, true
}

const evNoAction = 3

// specIDAlgs returns the digest sizes by algorithm of a Spec ID Event03.
func specIDAlgs(ev []byte) (map[uint16]int, bool) {
	const fixed = 16 + 4 + 4 + 4 // signature, platformClass, versions+uintnSize, numberOfAlgorithms
	if len(ev) < fixed || !bytes.Equal(ev[:16], []byte("Spec ID Event03\x00")) {
		return nil, false
	}
	num := int(binary.LittleEndian.Uint32(ev[24:28]))
	if num > (len(ev)-fixed)/4 {
		return nil, false
	}
	algs := make(map[uint16]int, num)
	for i := range num {
		off := fixed + 4*i
		algs[binary.LittleEndian.Uint16(ev[off:])] = int(binary.LittleEndian.Uint16(ev[off+2:]))
	}
	return algs, true
}

// skipEvent2 returns b after one TCG_PCR_EVENT2.
func skipEvent2(b []byte, algs map[uint16]int) ([]byte, bool) {
	if len(b) < 12 {
		return nil, false
	}
	count := binary.LittleEndian.Uint32(b[8:12])
	b = b[12:]
	for range count { // each digest takes >= 2 bytes, so this ends soon
		if len(b) < 2 {
			return nil, false
		}
		size, ok := algs[binary.LittleEndian.Uint16(b)]
		if !ok || size > len(b)-2 {
			return nil, false
		}
		b = b[2+size:]
	}
	if len(b) < 4 {
		return nil, false
	}
	size := int(binary.LittleEndian.Uint32(b))
	if size > len(b)-4 {
		return nil, false
	}
	return b[4+size:], true
}
