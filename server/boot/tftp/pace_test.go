package tftp

import (
	"bytes"
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/boot/pace"
	"github.com/sealroot/sealroot/server/boot/pace/pacetest"
	"github.com/sealroot/sealroot/test/testenv"
)

// TestRateCap fetches a file with a real TFTP client from a server capped
// at 64 KiB/s on a fake clock: the transfer is whole and took the time
// the cap implies (the clock records it; nothing waits).
func TestRateCap(t *testing.T) {
	const size, rate = 512 << 10, 64 << 10
	path := writeRandom(t, t.TempDir(), "ipxe.efi", size)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clock := pacetest.NewFakeClock()
	srv := New(map[string]string{"ipxe.efi": path}, testenv.Logger(t, "", hclog.Debug))
	srv.Timeout = time.Second
	srv.RateCap, srv.Clock = rate, clock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	defer func() {
		cancel()
		<-done
	}()
	got, err := fetch(t, conn.LocalAddr().String(), "ipxe.efi", 1428)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	if !bytes.Equal(got, want) {
		t.Fatalf("fetched %d bytes, want the %d of the file", len(got), len(want))
	}
	paced := time.Duration(float64(size-pace.MinBurst) / rate * float64(time.Second))
	if d := clock.Slept() - paced; d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("transfer paced for %v, want %v for %d bytes at %d B/s", clock.Slept(), paced, size, rate)
	}
	t.Logf("%d bytes paced for %v (%.0f B/s)", size, clock.Slept(), float64(size-pace.MinBurst)/clock.Slept().Seconds())
}
