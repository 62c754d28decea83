package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Boot reports: once its tunnel is up, the agent sends the server one
// BootReport, by HTTP POST of its JSON to
//
//	http://<TunnelPlan.ServerAddr>:ReportPort/ReportPath
//
// The server listens there on its tunnel address only, and takes the
// machine from the tunnel peer the request came through (WireGuard's
// cryptokey routing binds the source address to the peer's key), so an
// agent can only report for itself. A report is bookkeeping: it decides
// nothing.
const (
	ReportPort = 4480
	ReportPath = "/v1/boot-report"
)

// Limits of a BootReport, checked by DecodeBootReport.
const (
	MaxReportSize    = 96 << 10 // the encoded report
	MaxReportLog     = 64 << 10 // BootReport.Log
	MaxReportStages  = 16
	maxStageName     = 32
	maxReportFailure = 2 << 10
)

// ErrBadReport is a boot report that does not decode or breaks a limit.
var ErrBadReport = errors.New("invalid boot report")

// BootReport is the agent's account of one boot: how long each step took,
// the step that failed (after attestation: tunnel, root, provision) and
// the agent's log. It carries no secret: the agent writes none into its
// log and removes any payload secret value before sending.
//
//	{"stages": [{"name": "attest", "ms": 812}, ...],
//	 "failed": "root", "error": "...", "log": "sealroot: [ok] ..."}
type BootReport struct {
	Stages []StageTiming `json:"stages"`
	// Failed names the step that failed; "" when every step before
	// switch_root succeeded. Error is its message.
	Failed string `json:"failed,omitempty"`
	Error  string `json:"error,omitempty"`
	// Log is the agent's console and log output of this boot (its tail
	// when longer than MaxReportLog).
	Log string `json:"log,omitempty"`
}

// StageTiming is how long one step of the boot took.
type StageTiming struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"-"`
}

type stageJSON struct {
	Name   string `json:"name"`
	Millis int64  `json:"ms"`
}

// MarshalJSON encodes the duration in whole milliseconds.
func (s StageTiming) MarshalJSON() ([]byte, error) {
	return json.Marshal(stageJSON{s.Name, s.Duration.Milliseconds()})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (s *StageTiming) UnmarshalJSON(b []byte) error {
	var j stageJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	s.Name, s.Duration = j.Name, time.Duration(j.Millis)*time.Millisecond
	if j.Millis < 0 || j.Millis > (24*time.Hour).Milliseconds() {
		s.Duration = -1 // out of range (and would overflow): validate refuses it
	}
	return nil
}

// EncodeBootReport encodes r after checking it against the limits.
func EncodeBootReport(r *BootReport) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReport, err)
	}
	if len(b) > MaxReportSize {
		return nil, fmt.Errorf("%w: %d bytes encoded", ErrBadReport, len(b))
	}
	return b, nil
}

// DecodeBootReport decodes and checks a report sent by an agent. Every
// failure wraps ErrBadReport.
func DecodeBootReport(b []byte) (*BootReport, error) {
	if len(b) > MaxReportSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadReport, len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r BootReport
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReport, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the report", ErrBadReport)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *BootReport) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadReport, fmt.Sprintf(format, a...))
	}
	if len(r.Stages) > MaxReportStages {
		return bad("%d stages", len(r.Stages))
	}
	for _, s := range r.Stages {
		if !validStageName(s.Name) {
			return bad("stage name %q", s.Name)
		}
		if s.Duration < 0 || s.Duration > 24*time.Hour {
			return bad("stage %s took %v", s.Name, s.Duration)
		}
	}
	if r.Failed != "" && !validStageName(r.Failed) {
		return bad("failed stage %q", r.Failed)
	}
	if len(r.Error) > maxReportFailure || !utf8.ValidString(r.Error) {
		return bad("error of %d bytes", len(r.Error))
	}
	if len(r.Log) > MaxReportLog || !utf8.ValidString(r.Log) {
		return bad("log of %d bytes", len(r.Log))
	}
	return nil
}

// validStageName reports whether s is 1-32 of [a-z0-9_-].
func validStageName(s string) bool {
	if s == "" || len(s) > maxStageName {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == ""
}
