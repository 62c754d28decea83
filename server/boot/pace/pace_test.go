package pace_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/boot/pace"
	"github.com/sealroot/sealroot/server/boot/pace/pacetest"
)

func TestReader_pace(t *testing.T) {
	tests := []struct {
		name string
		rate int64
		size int
	}{
		{"1MiB_at_100KiB_per_s", 100 << 10, 1 << 20},
		{"8MiB_at_4MiB_per_s", 4 << 20, 8 << 20},
		{"smaller_than_burst", 1 << 20, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := pacetest.NewFakeClock()
			data := bytes.Repeat([]byte{0xa5}, tt.size)
			r := pace.NewReader(context.Background(), bytes.NewReader(data), tt.rate, clock)
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadAll = %d bytes, %v; want %d bytes", len(got), err, len(data))
			}
			// The burst passes at once, the rest at the rate.
			burst := max(int(tt.rate/10), pace.MinBurst)
			want := time.Duration(float64(max(tt.size-burst, 0)) / float64(tt.rate) * float64(time.Second))
			if d := clock.Slept() - want; d < -10*time.Millisecond || d > 10*time.Millisecond {
				t.Errorf("slept %v, want %v (±10ms)", clock.Slept(), want)
			}
		})
	}
}

func TestReader_cancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := pace.NewReader(ctx, bytes.NewReader(make([]byte, 1<<20)), 1024, pacetest.NewFakeClock())
	buf := make([]byte, 64<<10)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := r.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v, want context.Canceled", err)
	}
}
