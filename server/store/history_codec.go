package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// A machine's history is stored as one value: its attempts, oldest
// first, each framed as a uvarint length and a body. Appending copies the
// attempts kept and encodes only the new one (framing lets the oldest be
// dropped without decoding any); reading decodes them all.
//
// A body is a format byte (attemptFormat) and the fields of BootAttempt
// in order: time (as time.Time.MarshalBinary, length-prefixed), server,
// remote, outcome, check, reason, agent version (length-prefixed
// strings), duration (varint nanoseconds), stages (uvarint count, each a
// name and varint milliseconds, as the JSON form keeps them), failed and
// error. Fields added later go at the end of a new format; a body longer
// than its fields is refused.

// attemptFormat is the format byte of the bodies this sealroot writes.
const attemptFormat = 1

// errAttempt is a history value that does not decode.
var errAttempt = errors.New("malformed boot attempt")

// appendAttempt appends a's framed body to buf.
func appendAttempt(buf []byte, a BootAttempt) ([]byte, error) {
	t, err := a.Time.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode attempt time: %w", err)
	}
	n := 1 + 10 + len(t) + 8*10 + len(a.Server) + len(a.Remote) + len(a.Outcome) + len(a.Check) +
		len(a.Reason) + len(a.AgentVersion) + len(a.Failed) + len(a.Error) + 10
	for _, s := range a.Stages {
		n += 2*binary.MaxVarintLen64 + len(s.Name)
	}
	body := make([]byte, 0, n)
	body = append(body, attemptFormat)
	body = appendBytes(body, t)
	for _, s := range []string{a.Server, a.Remote, a.Outcome, a.Check, a.Reason, a.AgentVersion} {
		body = appendBytes(body, []byte(s))
	}
	body = binary.AppendVarint(body, int64(a.Duration))
	body = binary.AppendUvarint(body, uint64(len(a.Stages)))
	for _, s := range a.Stages {
		body = appendBytes(body, []byte(s.Name))
		body = binary.AppendVarint(body, s.Duration.Milliseconds())
	}
	body = appendBytes(body, []byte(a.Failed))
	body = appendBytes(body, []byte(a.Error))
	return appendBytes(buf, body), nil
}

func appendBytes(buf, b []byte) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(b))), b...)
}

// nextAttempt splits the first framed body off v.
func nextAttempt(v []byte) (body, rest []byte, err error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || n > uint64(len(v)-k) {
		return nil, nil, errAttempt
	}
	return v[k : k+int(n)], v[k+int(n):], nil
}

// countAttempts returns how many framed bodies v holds.
func countAttempts(v []byte) (int, error) {
	n := 0
	for len(v) > 0 {
		var err error
		if _, v, err = nextAttempt(v); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// attemptPlace returns where an attempt at time t goes in history value
// v (the offset after the last attempt not later than t) and how many
// attempts v holds. Only each attempt's time is decoded.
func attemptPlace(v []byte, t time.Time) (at, n int, err error) {
	for rest := v; len(rest) > 0; n++ {
		var body []byte
		if body, rest, err = nextAttempt(rest); err != nil {
			return 0, 0, err
		}
		bt, err := attemptTime(body)
		if err != nil {
			return 0, 0, err
		}
		if !bt.After(t) {
			at = len(v) - len(rest)
		}
	}
	return at, n, nil
}

// attemptTime decodes the time of one body.
func attemptTime(body []byte) (time.Time, error) {
	var t time.Time
	if len(body) == 0 || body[0] != attemptFormat {
		return t, fmt.Errorf("%w: unknown format", errAttempt)
	}
	r := attemptReader{b: body[1:]}
	b := r.bytes()
	if r.err != nil {
		return t, r.err
	}
	if err := t.UnmarshalBinary(b); err != nil {
		return t, fmt.Errorf("%w: time: %v", errAttempt, err)
	}
	return t, nil
}

// decodeAttempts decodes a history value, oldest first.
func decodeAttempts(v []byte) ([]BootAttempt, error) {
	n, err := countAttempts(v)
	if err != nil {
		return nil, err
	}
	out := make([]BootAttempt, 0, n)
	for len(v) > 0 {
		var body []byte
		body, v, _ = nextAttempt(v)
		a, err := decodeAttempt(body)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// attemptReader reads the fields of a body; the first error sticks.
type attemptReader struct {
	b   []byte
	err error
}

func (r *attemptReader) bytes() []byte {
	if r.err != nil {
		return nil
	}
	b, rest, err := nextAttempt(r.b)
	if err != nil {
		r.err = err
		return nil
	}
	r.b = rest
	return b
}

func (r *attemptReader) string() string { return string(r.bytes()) }

func (r *attemptReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	x, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errAttempt
		return 0
	}
	r.b = r.b[k:]
	return x
}

func (r *attemptReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errAttempt
		return 0
	}
	r.b = r.b[k:]
	return x
}

// decodeAttempt decodes one body.
func decodeAttempt(body []byte) (BootAttempt, error) {
	var a BootAttempt
	if len(body) == 0 || body[0] != attemptFormat {
		return a, fmt.Errorf("%w: unknown format", errAttempt)
	}
	r := attemptReader{b: body[1:]}
	if t := r.bytes(); r.err == nil {
		if err := a.Time.UnmarshalBinary(t); err != nil {
			return a, fmt.Errorf("%w: time: %v", errAttempt, err)
		}
	}
	a.Server, a.Remote, a.Outcome = r.string(), r.string(), r.string()
	a.Check, a.Reason, a.AgentVersion = r.string(), r.string(), r.string()
	a.Duration = time.Duration(r.varint())
	if n := r.uvarint(); n > 0 && r.err == nil {
		if n > uint64(len(r.b)) { // each stage takes at least a byte
			return a, errAttempt
		}
		a.Stages = make([]wire.StageTiming, n)
		for i := range a.Stages {
			a.Stages[i] = wire.StageTiming{Name: r.string(), Duration: stageDuration(r.varint())}
		}
	}
	a.Failed, a.Error = r.string(), r.string()
	if r.err != nil {
		return a, r.err
	}
	if len(r.b) > 0 {
		return a, fmt.Errorf("%w: %d bytes after its fields", errAttempt, len(r.b))
	}
	return a, nil
}

// stageDuration is a stage's stored milliseconds as a duration, as
// wire.StageTiming's JSON form decodes them: -1 when out of range.
func stageDuration(ms int64) time.Duration {
	if ms < 0 || ms > (24*time.Hour).Milliseconds() {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}
