package tpm

import (
	"encoding/binary"
	"testing"
	"time"
)

// busyTPM answers with code rc for the first busy commands, then succeeds.
type busyTPM struct {
	rc    uint32
	busy  int
	calls int
}

func (b *busyTPM) Send(cmd []byte) ([]byte, error) {
	b.calls++
	rsp := make([]byte, 10)
	binary.BigEndian.PutUint16(rsp, 0x8001)
	binary.BigEndian.PutUint32(rsp[2:], 10)
	if b.calls <= b.busy {
		binary.BigEndian.PutUint32(rsp[6:], b.rc)
	}
	return rsp, nil
}

func TestRetryTPM(t *testing.T) {
	tests := []struct {
		name      string
		rc        uint32
		busy      int
		wantCalls int
		wantRC    uint32
	}{
		{"retry_then_success", rcRetry, 3, 4, 0},
		{"testing_then_success", rcTesting, 1, 2, 0},
		{"yielded_then_success", rcYielded, 2, 3, 0},
		{"retry_forever_gives_up", rcRetry, 100, retryAttempts, rcRetry},
		{"other_error_not_retried", 0x98E /* TPM_RC_AUTH_FAIL */, 5, 1, 0x98E},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &busyTPM{rc: tt.rc, busy: tt.busy}
			var slept time.Duration
			r := retryTPM{TPM: b, sleep: func(d time.Duration) { slept += d }}
			rsp, err := r.Send([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 1, 0x44})
			if err != nil {
				t.Fatalf("Send = %v", err)
			}
			if rc := binary.BigEndian.Uint32(rsp[6:]); b.calls != tt.wantCalls || rc != tt.wantRC {
				t.Errorf("Send: %d calls, rc %#x; want %d calls, rc %#x", b.calls, rc, tt.wantCalls, tt.wantRC)
			}
			if slept > 15*time.Second {
				t.Errorf("slept %v in all, want a bounded wait", slept)
			}
		})
	}
}
