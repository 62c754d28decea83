// Package entropy makes sure the kernel's CRNG is ready before anything in
// the agent uses crypto/rand.
//
// crypto/rand (DHCP transaction IDs, TLS, QUIC) blocks in getrandom(2) until
// the kernel's CRNG is initialised. A VM without RDRAND or virtio-rng can
// wait minutes for that. Seed checks readiness without blocking and, if the
// CRNG is not ready, credits bytes from a hardware source (the TPM's
// TPM2_GetRandom) with the RNDADDENTROPY ioctl, which makes it ready at once.
//
// Seed must run before the first use of crypto/rand.
package entropy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SeedBytes is how many bytes Seed takes from the source (512 bits, twice
// what the CRNG needs to initialise).
const SeedBytes = 64

// ErrNotReady is returned by Seed when getrandom(2) still blocks after the
// source's bytes were credited.
var ErrNotReady = errors.New("kernel CRNG still not ready after crediting entropy")

// Source returns n random bytes from a hardware generator, for example
// (*tpm.TPM).Random.
type Source func(ctx context.Context, n int) ([]byte, error)

// Seed credits SeedBytes from src to the kernel if, and only if, the CRNG is
// not ready yet. It reports whether it credited anything. src is not called
// when the CRNG is already ready.
func Seed(ctx context.Context, src Source) (seeded bool, err error) {
	return seeder{ready: Ready, credit: Credit}.seed(ctx, src)
}

// seeder holds the kernel-facing operations, replaced in tests.
type seeder struct {
	ready  func() (bool, error)
	credit func([]byte) error
}

func (s seeder) seed(ctx context.Context, src Source) (bool, error) {
	ok, err := s.ready()
	if err != nil || ok {
		return false, err
	}
	b, err := src(ctx, SeedBytes)
	if err != nil {
		return false, fmt.Errorf("entropy source: %w", err)
	}
	if len(b) < SeedBytes {
		return false, fmt.Errorf("entropy source returned %d bytes, want %d", len(b), SeedBytes)
	}
	if err := s.credit(b[:SeedBytes]); err != nil {
		return false, err
	}
	if ok, err := s.ready(); err != nil {
		return true, err
	} else if !ok {
		return true, ErrNotReady
	}
	return true, nil
}

// Ready reports whether getrandom(2) would return without blocking, that
// is whether the kernel's CRNG is initialised.
func Ready() (bool, error) {
	var b [1]byte
	for {
		_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EAGAIN):
			return false, nil
		case errors.Is(err, unix.EINTR):
			continue
		default:
			return false, fmt.Errorf("getrandom: %w", err)
		}
	}
}

// Credit mixes b into the kernel's input pool and credits it with 8 bits of
// entropy per byte (ioctl RNDADDENTROPY on /dev/urandom; needs
// CAP_SYS_ADMIN). Only pass bytes from a true hardware generator.
func Credit(b []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info := randPoolInfo(b)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0])))
	if errno != 0 {
		return &os.PathError{Op: "ioctl RNDADDENTROPY", Path: f.Name(), Err: errno}
	}
	return nil
}

// randPoolInfo encodes struct rand_pool_info { int entropy_count; int
// buf_size; __u32 buf[]; } in native byte order.
func randPoolInfo(b []byte) []byte {
	info := make([]byte, 8+len(b))
	binary.NativeEndian.PutUint32(info[0:4], uint32(8*len(b)))
	binary.NativeEndian.PutUint32(info[4:8], uint32(len(b)))
	copy(info[8:], b)
	return info
}
