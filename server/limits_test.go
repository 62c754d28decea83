package server

import (
	"strings"
	"testing"
	"time"
)

func TestLimitsConfig(t *testing.T) {
	l, err := (&LimitsConfig{HelloTimeout: "2s", ConnsPerSource: 3, HTTPStallTimeout: "1m", TFTPTransfersPerSource: 2, RetryAbove: -1}).parse()
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if l.attest.HelloTimeout != 2*time.Second || l.attest.ConnsPerSource != 3 || l.attest.RetryAbove != -1 ||
		l.http.StallTimeout != time.Minute || l.tftpPerSrc != 2 {
		t.Errorf("parsed = %+v", l)
	}
	if l, err := (*LimitsConfig)(nil).parse(); err != nil || l != (limits{}) {
		t.Errorf("nil config = %+v, %v; want the zero limits (defaults)", l, err)
	}
	tests := []struct {
		name string
		cfg  LimitsConfig
		want string
	}{
		{"bad_duration", LimitsConfig{FrameTimeout: "soon"}, "frame_timeout"},
		{"negative_duration", LimitsConfig{HTTPStallTimeout: "-1s"}, "http_stall_timeout"},
		{"negative_count", LimitsConfig{ExchangesPerSource: -2}, "exchanges_per_source"},
		{"retry_below_minus_one", LimitsConfig{RetryAbove: -5}, "retry_above"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.cfg.parse(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parse = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
