package entropy

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// fakeKernel is a CRNG that becomes ready once enough bytes were credited.
type fakeKernel struct {
	ready    bool
	credited []byte
	// readyAfter is how many credited bytes make the CRNG ready; 0 = never.
	readyAfter int
}

func (k *fakeKernel) seeder() seeder {
	return seeder{
		ready: func() (bool, error) { return k.ready, nil },
		credit: func(b []byte) error {
			k.credited = append(k.credited, b...)
			if k.readyAfter > 0 && len(k.credited) >= k.readyAfter {
				k.ready = true
			}
			return nil
		},
	}
}

func counterSource(calls *int) Source {
	return func(_ context.Context, n int) ([]byte, error) {
		*calls++
		return bytes.Repeat([]byte{0xA5}, n), nil
	}
}

func TestSeed(t *testing.T) {
	srcErr := errors.New("tpm gone")
	tests := []struct {
		name       string
		kernel     fakeKernel
		src        func(calls *int) Source
		wantSeeded bool
		wantErr    error
		wantCalls  int
	}{
		{name: "already_ready", kernel: fakeKernel{ready: true}, src: counterSource, wantCalls: 0},
		{name: "not_ready_seeded", kernel: fakeKernel{readyAfter: SeedBytes}, src: counterSource, wantSeeded: true, wantCalls: 1},
		{name: "still_blocking", kernel: fakeKernel{}, src: counterSource, wantSeeded: true, wantErr: ErrNotReady, wantCalls: 1},
		{
			name: "source_error", kernel: fakeKernel{readyAfter: 1},
			src: func(calls *int) Source {
				return func(context.Context, int) ([]byte, error) { *calls++; return nil, srcErr }
			},
			wantErr: srcErr, wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			k := tt.kernel
			seeded, err := k.seeder().seed(context.Background(), tt.src(&calls))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("seed() error = %v, want %v", err, tt.wantErr)
			}
			if seeded != tt.wantSeeded || calls != tt.wantCalls {
				t.Errorf("seed() = seeded %v after %d source calls, want %v after %d", seeded, calls, tt.wantSeeded, tt.wantCalls)
			}
			if tt.wantSeeded && len(k.credited) != SeedBytes {
				t.Errorf("credited %d bytes, want %d", len(k.credited), SeedBytes)
			}
		})
	}
}

func TestSeedShortSource(t *testing.T) {
	k := fakeKernel{readyAfter: 1}
	short := func(context.Context, int) ([]byte, error) { return make([]byte, 10), nil }
	if _, err := k.seeder().seed(context.Background(), short); err == nil {
		t.Fatal("seed() with a 10-byte source succeeded, want an error")
	}
	if len(k.credited) != 0 {
		t.Errorf("credited %d bytes from a short source, want none", len(k.credited))
	}
}

func TestRandPoolInfo(t *testing.T) {
	info := randPoolInfo([]byte{1, 2, 3, 4})
	want := []byte{32, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4} // little-endian hosts
	if !bytes.Equal(info, want) {
		t.Errorf("randPoolInfo = %v, want %v", info, want)
	}
}

func TestReadyOnHost(t *testing.T) {
	ok, err := Ready()
	if err != nil {
		t.Fatalf("Ready() = %v", err)
	}
	if !ok {
		t.Skip("host CRNG not ready")
	}
	// An initialised CRNG means Seed must not touch the source.
	called := false
	seeded, err := Seed(context.Background(), func(context.Context, int) ([]byte, error) {
		called = true
		return nil, errors.New("must not be called")
	})
	if err != nil || seeded || called {
		t.Errorf("Seed() on a ready host = (%v, %v), source called %v; want (false, nil), not called", seeded, err, called)
	}
}

// TestCreditReal runs the real ioctl. Crediting only adds entropy to the
// pool, so it is harmless on the host.
func TestCreditReal(t *testing.T) {
	testenv.RequireRoot(t, "RNDADDENTROPY")
	if err := Credit(bytes.Repeat([]byte{0x5A}, SeedBytes)); err != nil {
		t.Fatalf("Credit() = %v", err)
	}
}
