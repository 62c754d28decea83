package config

import (
	"strings"
	"testing"
	"time"
)

func TestLimitsConfig(t *testing.T) {
	l, err := (&LimitsConfig{HelloTimeout: "2s", ConnsPerSource: 3, HTTPStallTimeout: "1m", TFTPTransfersPerSource: 2, RetryAbove: -1,
		LetGoAfter: "20s", BootGrace: "10s"}).Parse()
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if l.Attest.HelloTimeout != 2*time.Second || l.Attest.ConnsPerSource != 3 || l.Attest.RetryAbove != -1 ||
		l.HTTP.StallTimeout != time.Minute || l.TFTPPerSource != 2 || l.LetGoAfter != 20*time.Second || l.BootGrace != 10*time.Second {
		t.Errorf("parsed = %+v", l)
	}
	if l, err := (*LimitsConfig)(nil).Parse(); err != nil || l != (Limits{}) {
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
		{"negative_waiting", LimitsConfig{WaitingPerSource: -1}, "waiting_per_source"},
		{"bad_person_timeout", LimitsConfig{PersonTimeout: "0s"}, "person_timeout"},
		{"bad_let_go_after", LimitsConfig{LetGoAfter: "0s"}, "let_go_after"},
		{"bad_boot_grace", LimitsConfig{BootGrace: "later"}, "boot_grace"},
		{"retry_below_minus_one", LimitsConfig{RetryAbove: -5}, "retry_above"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.cfg.Parse(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
