// Package pace caps the rate of one byte stream, such as one artifact
// download: some firmware and NIC pairs hang when iPXE downloads at line
// rate (ipxe/ipxe#1023, #1545), and a per-connection cap on the server
// avoids it.
//
// A Reader lets Burst bytes pass at once, then as many bytes as the rate
// allows: a token bucket that starts full and refills at Rate bytes per
// second. Time comes from a Clock, so tests pace without waiting.
package pace

import (
	"context"
	"io"
	"time"
)

// Clock is the time source of a Reader.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, then returns ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep waits for d or ctx.
func (SystemClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MinBurst is the smallest burst: one read of a few TFTP blocks or TCP
// segments.
const MinBurst = 16 << 10

// Reader paces reads from R to Rate bytes per second. It is not safe for
// concurrent use: one Reader per connection.
type Reader struct {
	r     io.Reader
	ctx   context.Context
	clock Clock
	rate  float64 // bytes per second
	burst int

	tokens float64 // bytes that may pass now; negative: owed
	last   time.Time
}

// NewReader returns a Reader of r paced to rate bytes per second (> 0),
// with a burst of a tenth of a second's worth (at least MinBurst). Reads
// wait on clock and fail with ctx's error once ctx is done.
func NewReader(ctx context.Context, r io.Reader, rate int64, clock Clock) *Reader {
	burst := max(int(rate/10), MinBurst)
	return &Reader{r: r, ctx: ctx, clock: clock, rate: float64(rate), burst: burst,
		tokens: float64(burst), last: clock.Now()}
}

// Read reads at most a burst from R, after waiting until the bytes read
// before are paid for.
func (p *Reader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	now := p.clock.Now()
	p.tokens = min(p.tokens+now.Sub(p.last).Seconds()*p.rate, float64(p.burst))
	p.last = now
	if p.tokens < 0 {
		wait := time.Duration(-p.tokens / p.rate * float64(time.Second))
		if err := p.clock.Sleep(p.ctx, wait); err != nil {
			return 0, err
		}
		now = p.clock.Now()
		p.tokens += now.Sub(p.last).Seconds() * p.rate
		p.last = now
	}
	if len(b) > p.burst {
		b = b[:p.burst]
	}
	n, err := p.r.Read(b)
	p.tokens -= float64(n)
	return n, err
}

// ReadSeeker is a Reader whose source seeks (for HTTP range requests and
// the TFTP transfer size); seeking does not change the pace.
type ReadSeeker struct {
	*Reader
	s io.Seeker
}

// NewReadSeeker is NewReader for an io.ReadSeeker.
func NewReadSeeker(ctx context.Context, rs io.ReadSeeker, rate int64, clock Clock) *ReadSeeker {
	return &ReadSeeker{Reader: NewReader(ctx, rs, rate, clock), s: rs}
}

// Seek seeks the source.
func (p *ReadSeeker) Seek(off int64, whence int) (int64, error) { return p.s.Seek(off, whence) }
