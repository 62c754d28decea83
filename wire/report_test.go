package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func sampleReport() *BootReport {
	return &BootReport{
		Stages: []StageTiming{{"entropy", 3 * time.Millisecond}, {"network", 2410 * time.Millisecond},
			{"attest", 812 * time.Millisecond}, {"tunnel", 40 * time.Millisecond}},
		Failed: "root",
		Error:  "iscsi login: target refused",
		Log:    "sealroot: [ok] entropy (0.00s)\nsealroot: [FAILED] root (1.20s): iscsi login\n",
	}
}

func TestBootReportRoundTrip(t *testing.T) {
	b, err := EncodeBootReport(sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBootReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stages[1].Duration != 2410*time.Millisecond || got.Failed != "root" || got.Log != sampleReport().Log {
		t.Errorf("DecodeBootReport(EncodeBootReport(r)) = %+v, want %+v", got, sampleReport())
	}
}

func TestDecodeBootReportRejects(t *testing.T) {
	tooManyStages := `{"stages":[` + strings.Repeat(`{"name":"a","ms":1},`, MaxReportStages) + `{"name":"a","ms":1}]}`
	for name, in := range map[string]string{
		"not_json":         "hello",
		"unknown_field":    `{"stages":[],"secret":"x"}`,
		"trailing_data":    `{"stages":[]} {}`,
		"bad_stage_name":   `{"stages":[{"name":"Attest\n","ms":1}]}`,
		"empty_stage_name": `{"stages":[{"name":"","ms":1}]}`,
		"negative_time":    `{"stages":[{"name":"attest","ms":-1}]}`,
		"too_many_stages":  tooManyStages,
		"bad_failed":       `{"stages":[],"failed":"../x"}`,
		"log_too_long":     `{"stages":[],"log":"` + strings.Repeat("a", MaxReportLog+1) + `"}`,
		"too_big":          strings.Repeat(" ", MaxReportSize+1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeBootReport([]byte(in)); !errors.Is(err, ErrBadReport) {
				t.Errorf("DecodeBootReport = %v, want ErrBadReport", err)
			}
		})
	}
}

// FuzzDecodeBootReport: the decoder never panics, fails only with
// ErrBadReport, and what it accepts re-encodes to a report it accepts
// again unchanged.
func FuzzDecodeBootReport(f *testing.F) {
	b, err := EncodeBootReport(sampleReport())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"stages":[]}`))
	f.Add([]byte(`{"stages":[{"name":"x","ms":9223372036854775807}]}`))
	f.Add([]byte(`{"stages":[{"name":"x","ms":18446744073710}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeBootReport(in)
		if err != nil {
			if !errors.Is(err, ErrBadReport) {
				t.Fatalf("DecodeBootReport error %v is not ErrBadReport", err)
			}
			return
		}
		b, err := EncodeBootReport(r)
		if err != nil {
			t.Fatalf("re-encode of an accepted report: %v", err)
		}
		r2, err := DecodeBootReport(b)
		if err != nil {
			t.Fatalf("decode of re-encoded report: %v", err)
		}
		b2, _ := EncodeBootReport(r2)
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the report: %q != %q", b, b2)
		}
	})
}
