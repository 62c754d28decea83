package attest

import (
	"context"
	"sync/atomic"
	"time"
)

// Noise counts connections that ended before a client proved or asked
// anything a record is kept for: they are counted here and summarised in
// the log at most once per Limits.NoiseLogInterval, never logged or
// audited one by one.
type Noise struct {
	Refused   uint64 // connection attempts (Initial packets) refused: their source held ConnsPerSource
	Busy      uint64 // hellos refused: their source held ExchangesPerSource, or the server MaxSessions
	Idle      uint64 // connections that sent no message before HelloTimeout
	HalfOpen  uint64 // messages whose last byte did not come within FrameTimeout (or HelloTimeout)
	Garbage   uint64 // malformed frames and hellos before a valid identity
	Abandoned uint64 // clients that closed or reset before a complete hello
}

// total is the sum of all counts.
func (n Noise) total() uint64 {
	return n.Refused + n.Busy + n.Idle + n.HalfOpen + n.Garbage + n.Abandoned
}

func (n Noise) sub(o Noise) Noise {
	return Noise{n.Refused - o.Refused, n.Busy - o.Busy, n.Idle - o.Idle, n.HalfOpen - o.HalfOpen,
		n.Garbage - o.Garbage, n.Abandoned - o.Abandoned}
}

// noiseCounters is the live, concurrently updated form of Noise.
type noiseCounters struct {
	refused, busy, idle, halfOpen, garbage, abandoned atomic.Uint64
}

func (c *noiseCounters) snapshot() Noise {
	return Noise{c.refused.Load(), c.busy.Load(), c.idle.Load(), c.halfOpen.Load(), c.garbage.Load(), c.abandoned.Load()}
}

// Load is what the server holds now, and how often it asked for a Retry.
type Load struct {
	Conns       int    // QUIC connections, handshaking or established
	Handshaking int    // of which still in their handshake
	Exchanges   int    // exchanges in progress, or in line for a slot
	Queued      int    // of which in line for an exchange slot
	Retries     uint64 // connection attempts answered with a QUIC Retry
	Validated   uint64 // connections accepted after a Retry proved their address
}

// Noise returns the noise counted since the server started.
func (s *Server) Noise() Noise { return s.noise.snapshot() }

// Load returns the server's current load.
func (s *Server) Load() Load {
	conns, handshaking, exchanges := s.sources.counts()
	return Load{Conns: conns, Handshaking: handshaking, Exchanges: exchanges, Queued: s.exchanges.Load().Waiting,
		Retries: s.retries.Load(), Validated: s.validated.Load()}
}

// logNoise writes one summary line per interval in which noise was
// counted, until ctx ends.
func (s *Server) logNoise(ctx context.Context) {
	t := time.NewTicker(s.limits.NoiseLogInterval)
	defer t.Stop()
	var last Noise
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.Noise()
		d := now.sub(last)
		last = now
		if d.total() == 0 {
			continue
		}
		s.logger.Warn("unauthenticated noise", noiseFields(d, s.limits.NoiseLogInterval)...)
	}
}

func noiseFields(d Noise, every time.Duration) []any {
	return []any{"interval", every, "refused", d.Refused, "busy", d.Busy, "idle", d.Idle,
		"half_open", d.HalfOpen, "garbage", d.Garbage, "abandoned", d.Abandoned}
}
