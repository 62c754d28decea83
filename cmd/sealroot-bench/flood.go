package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/quic-go/quic-go"
	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/test/loadgen/tempserver"
	"github.com/sealroot/sealroot/wire"
)

type benchFloodArgs struct {
	idle, halfOpen, garbage int
	sources                 int
	n                       int
	settle                  time.Duration
	dialRate                int
	junkNice                int
	logLevel                string
	cpuProfile              string
}

func newFloodCmd(e *env) *cobra.Command {
	var a benchFloodArgs
	c := &cobra.Command{
		Use:   "flood",
		Short: "Measure attestation latency while junk QUIC connections flood the server",
		Long: `Start a daemon in-process on 127.0.0.1 with its default limits, enroll one
simulated machine and let it attest -n times in a row (before). Then hold
--idle connections that say nothing, --half-open ones that send three
bytes of a hello and --garbage ones that send bytes that are no frame,
each redialled as soon as the server drops it, while the machine attests
-n times again: first all from one address (127.0.0.2), then spread over
--sources addresses (127.0.0.10 and up; Linux routes 127.0.0.0/8 on lo).
The genuine machine comes from 127.0.0.1.

The junk runs in a child process at nice --junk-nice (default 10): on a
network it runs on other machines, and its own TLS work should not be
billed to the server; --junk-nice -1 runs it in this process. Its dials
are capped at --dial-rate per second (2s to 30s jittered backoff after a
refusal): it holds connections, it is not a packet flood.

Prints, per phase, the machine's latency just before and during the
flood, what the junk got (dials, refused, dropped by the server and after
how long), the server's load, the audit records and log bytes the junk
caused and the server's noise counters, with the machine's load average
(the CPUs may be shared); last line: "flood: attest p99 during/before=X"
(the worse phase).`,
		Args: cmdline.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if a.idle < 0 || a.halfOpen < 0 || a.garbage < 0 || a.n < 1 || a.sources < 1 || a.sources > 200 ||
				a.junkNice < -1 || a.junkNice > 19 || a.dialRate < 0 {
				return cmdline.Usagef(c, "want counts >= 0, -n >= 1, 1 <= --sources <= 200, -1 <= --junk-nice <= 19, --dial-rate >= 0")
			}
			return runBenchFlood(c.Context(), e, a)
		},
	}
	f := c.Flags()
	f.IntVar(&a.idle, "idle", 1000, "idle connections to hold")
	f.IntVar(&a.halfOpen, "half-open", 1000, "half-open connections to hold")
	f.IntVar(&a.garbage, "garbage", 1000, "garbage connections to hold")
	f.IntVar(&a.sources, "sources", 32, "source addresses of the spread phase")
	f.IntVarP(&a.n, "count", "n", 200, "attestations before and during each phase")
	f.DurationVar(&a.settle, "settle", 6*time.Second, "time the flood runs before the machine attests")
	f.IntVar(&a.dialRate, "dial-rate", 200, "junk connection attempts per second, at most (0: no limit)")
	f.IntVar(&a.junkNice, "junk-nice", 10, "nice value of the junk's child process (-1: junk runs in this process)")
	f.StringVar(&a.cpuProfile, "cpuprofile", "", "write a CPU profile of the flood phases to `file`")
	f.StringVar(&a.logLevel, "log-level", "info", "log `level` of the in-process server (its output is counted, not shown)")
	return c
}

// junkSourceRE matches the junk sources (127.0.0.2 and 127.0.0.10 up),
// not the genuine machine's 127.0.0.1.
var junkSourceRE = regexp.MustCompile(`127\.0\.0\.([2-9]|[1-9][0-9]+)\b`)

// countingWriter counts what the server logs, and the lines that name a
// junk source.
type countingWriter struct {
	mu        sync.Mutex
	bytes     int
	lines     int
	junkLines int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bytes += len(p)
	w.lines += bytes.Count(p, []byte("\n"))
	if junkSourceRE.Match(p) {
		w.junkLines += bytes.Count(p, []byte("\n"))
	}
	return len(p), nil
}

func (w *countingWriter) counts() (int, int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes, w.lines, w.junkLines
}

func runBenchFlood(ctx context.Context, e *env, a benchFloodArgs) error {
	logs := &countingWriter{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "sealroot", Level: hclog.LevelFromString(a.logLevel), Output: logs})
	s, err := tempserver.StartWith(ctx, logger, nil)
	if err != nil {
		return fmt.Errorf("in-process server: %w", err)
	}
	defer s.Close()
	agents, err := loadgen.NewAgents(ctx, rand.Reader, 1, loadgen.DefaultSpec())
	if err != nil {
		return err
	}
	if err := loadgen.Enroll(ctx, s.Target, s.Admin(), agents); err != nil {
		return err
	}
	clients, err := s.Target.Clients(agents)
	if err != nil {
		return err
	}
	attestN := func() (*loadgen.Stats, error) {
		return loadgen.Run(ctx, loadgen.Options{N: a.n, Concurrency: 1}, loadgen.AttestOp(clients))
	}
	fmt.Fprintf(e.Stdout, "flood bench: server in-process on %s, default limits; one machine attests %d times before and during each phase, from 127.0.0.1; junk dials at most %d/s; load average %s\n",
		s.Target.Addr, a.n, a.dialRate, loadAvg())
	if a.cpuProfile != "" {
		pf, err := os.Create(a.cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	worst := 0.0
	for _, ph := range []struct {
		name    string
		sources []netip.Addr
	}{
		{"one address", []netip.Addr{netip.MustParseAddr("127.0.0.2")}},
		{fmt.Sprintf("%d addresses", a.sources), spreadSources(a.sources)},
	} {
		// The baseline is taken just before each phase: this machine's
		// CPUs are shared, and their load changes from minute to minute.
		before, err := attestN()
		if err != nil {
			return err
		}
		r, err := runFloodPhase(ctx, e, s, logs, a, ph.sources, attestN)
		if err != nil {
			return err
		}
		ratio := 0.0
		if before.P99 > 0 {
			ratio = float64(r.during.P99) / float64(before.P99)
		}
		worst = max(worst, ratio)
		r.print(e.Stdout, ph.name, before, ratio)
		if r.during.Errors > 0 {
			fmt.Fprintf(e.Stderr, "sealroot-bench: %d attestations failed during the flood: %v\n", r.during.Errors, r.during.Err)
		}
	}
	_, err = fmt.Fprintf(e.Stdout, "flood: attest p99 during/before=%.2f\n", worst)
	return err
}

// loadAvg is the 1-minute load average, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// spreadSources returns n loopback addresses from 127.0.0.10.
func spreadSources(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})
	}
	return out
}

// floodResult is one phase's figures.
type floodResult struct {
	during                  *loadgen.Stats
	dials, refused, dropped uint64
	held                    int           // connections the server held when the machine began
	dropP50, dropMax        time.Duration // handshake to the server's close
	maxConns, maxExchanges  int           // sampled server load
	retries                 uint64
	noise                   attest.Noise
	auditJunk               int // audit records naming a junk source
	logBytes, logLines      int
	logJunkLines            int
	seconds                 float64
}

func (r *floodResult) print(w io.Writer, name string, before *loadgen.Stats, ratio float64) {
	fmt.Fprintf(w, "flood from %s: %d dials (%.0f/s), %d refused, %d dropped by the server after p50 %.1fs max %.1fs; %d held when the machine began; server load max %d conns %d exchanges, %d Retries\n",
		name, r.dials, float64(r.dials)/r.seconds, r.refused, r.dropped, r.dropP50.Seconds(), r.dropMax.Seconds(), r.held, r.maxConns, r.maxExchanges, r.retries)
	fmt.Fprintf(w, "  noise counted: refused %d busy %d idle %d half-open %d garbage %d abandoned %d; junk audit records %d; server log %d bytes in %d lines, %d naming a junk source\n",
		r.noise.Refused, r.noise.Busy, r.noise.Idle, r.noise.HalfOpen, r.noise.Garbage, r.noise.Abandoned, r.auditJunk, r.logBytes, r.logLines, r.logJunkLines)
	fmt.Fprintf(w, "  attest before: p50 %.1fms p99 %.1fms max %.1fms errors %d\n", ms(before.P50), ms(before.P99), ms(before.Max), before.Errors)
	fmt.Fprintf(w, "  attest during: p50 %.1fms p99 %.1fms max %.1fms errors %d; p99 during/before=%.2f; load average %s\n",
		ms(r.during.P50), ms(r.during.P99), ms(r.during.Max), r.during.Errors, ratio, loadAvg())
}

// runFloodPhase floods from sources while the machine attests.
func runFloodPhase(ctx context.Context, e *env, s *tempserver.Server, logs *countingWriter, a benchFloodArgs, sources []netip.Addr,
	attestN func() (*loadgen.Stats, error)) (*floodResult, error) {
	noise0 := s.Attest().Noise()
	load0 := s.Attest().Load()
	b0, l0, j0 := logs.counts()
	junkAudit0, err := junkAuditRecords(s.AuditPath())
	if err != nil {
		return nil, err
	}
	junk, err := startJunk(ctx, e, a, s.Target.Addr, sources)
	if err != nil {
		return nil, err
	}
	fctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	start := time.Now()
	var maxConns, maxExchanges int
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			l := s.Attest().Load()
			maxConns, maxExchanges = max(maxConns, l.Conns), max(maxExchanges, l.Exchanges)
			select {
			case <-fctx.Done():
				return
			case <-t.C:
			}
		}
	})
	sleep(ctx, a.settle)
	held := s.Attest().Load().Conns
	during, err := attestN()
	stop()
	wg.Wait()
	js, jerr := junk()
	if err != nil {
		return nil, err
	}
	if jerr != nil {
		return nil, jerr
	}
	r := &floodResult{
		during: during, dials: js.Dials, refused: js.Refused, dropped: js.Dropped, held: held,
		maxConns: maxConns, maxExchanges: maxExchanges, retries: s.Attest().Load().Retries - load0.Retries,
		noise: noiseSince(s.Attest().Noise(), noise0), seconds: time.Since(start).Seconds(),
		dropP50: js.DropP50, dropMax: js.DropMax,
	}
	b1, l1, j1 := logs.counts()
	r.logBytes, r.logLines, r.logJunkLines = b1-b0, l1-l0, j1-j0
	junkAudit1, err := junkAuditRecords(s.AuditPath())
	if err != nil {
		return nil, err
	}
	r.auditJunk = junkAudit1 - junkAudit0
	return r, nil
}

// junkAuditRecords counts the audit records of any source but the genuine
// machine's 127.0.0.1.
func junkAuditRecords(path string) (int, error) {
	entries, err := audit.ReadAll(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, en := range entries {
		if host, _, _ := net.SplitHostPort(en.Remote); host != "" && host != "127.0.0.1" {
			n++
		}
	}
	return n, nil
}

func noiseSince(n, o attest.Noise) attest.Noise {
	return attest.Noise{Refused: n.Refused - o.Refused, Busy: n.Busy - o.Busy, Idle: n.Idle - o.Idle,
		HalfOpen: n.HalfOpen - o.HalfOpen, Garbage: n.Garbage - o.Garbage, Abandoned: n.Abandoned - o.Abandoned}
}

// flooder holds junk connections from a set of source addresses, one QUIC
// transport (UDP socket) per address.
type flooder struct {
	addr       *net.UDPAddr
	transports []*quic.Transport

	tokens                  chan struct{} // one per allowed dial; nil: no limit
	dials, refused, dropped atomic.Uint64

	mu    sync.Mutex
	drops []time.Duration // guarded by mu: handshake to the server's close
}

func newFlooder(target string, sources []netip.Addr, rate int) (*flooder, error) {
	addr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	f := &flooder{addr: addr}
	if rate > 0 {
		f.tokens = make(chan struct{}, rate/10+1)
	}
	for _, src := range sources {
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			f.close()
			return nil, fmt.Errorf("junk source %s: %w", src, err)
		}
		f.transports = append(f.transports, &quic.Transport{Conn: pc})
	}
	return f, nil
}

func (f *flooder) close() {
	for _, tr := range f.transports {
		tr.Close()
		tr.Conn.Close()
	}
}

// run holds junk connections of a's kinds until ctx ends and returns what
// happened to them.
func (f *flooder) run(ctx context.Context, a benchFloodArgs) *junkStats {
	var wg sync.WaitGroup
	i := 0
	for _, k := range []struct {
		kind string
		n    int
	}{{"idle", a.idle}, {"half-open", a.halfOpen}, {"garbage", a.garbage}} {
		for range k.n {
			tr := f.transports[i%len(f.transports)]
			i++
			wg.Go(func() { f.hold(ctx, tr, k.kind) })
		}
	}
	if f.tokens != nil {
		wg.Go(func() { f.refill(ctx, a.dialRate) })
	}
	wg.Wait()
	st := &junkStats{Dials: f.dials.Load(), Refused: f.refused.Load(), Dropped: f.dropped.Load()}
	st.DropP50, st.DropMax = f.dropTimes()
	return st
}

// hold keeps one junk connection of kind open until ctx ends: it redials
// as soon as the server drops it, and backs off (2s to 30s, jittered)
// while the server refuses: it holds connections, it is not a packet
// flood (which no server-side limit stops). Junk clients offer only
// X25519 and check no certificate, as a cheap attacker would.
func (f *flooder) hold(ctx context.Context, tr *quic.Transport, kind string) {
	tlsConf := &tls.Config{NextProtos: []string{wire.ALPN}, CurvePreferences: []tls.CurveID{tls.X25519},
		InsecureSkipVerify: true} // junk does not care whom it floods
	qconf := &quic.Config{HandshakeIdleTimeout: 5 * time.Second, MaxIdleTimeout: time.Minute}
	const minBackoff, maxBackoff = 2 * time.Second, 30 * time.Second
	backoff := minBackoff
	sleep(ctx, jitter(minBackoff)) // do not all start at once
	for ctx.Err() == nil {
		if f.tokens != nil {
			select {
			case <-f.tokens:
			case <-ctx.Done():
				return
			}
		}
		f.dials.Add(1)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := tr.Dial(dctx, f.addr, tlsConf, qconf)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.refused.Add(1)
			sleep(ctx, jitter(backoff))
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		start := time.Now()
		f.junk(ctx, c, kind)
		select {
		case <-c.Context().Done():
			f.dropped.Add(1)
			f.mu.Lock()
			f.drops = append(f.drops, time.Since(start))
			f.mu.Unlock()
		case <-ctx.Done():
			c.CloseWithError(0, "")
		}
	}
}

// refill adds rate dial tokens per second, in tenths, until ctx ends.
func (f *flooder) refill(ctx context.Context, rate int) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range rate / 10 {
			select {
			case f.tokens <- struct{}{}:
			default:
			}
		}
	}
}

// junk does what a connection of kind does after the handshake.
func (f *flooder) junk(ctx context.Context, c *quic.Conn, kind string) {
	if kind == "idle" {
		return
	}
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		return
	}
	if kind == "half-open" {
		st.Write([]byte{wire.Version, byte(wire.TypeHello), 0})
		return
	}
	st.Write([]byte(strings.Repeat("junk", 16)))
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, st)
}

func (f *flooder) dropTimes() (p50, maxd time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.drops) == 0 {
		return 0, 0
	}
	d := slices.Clone(f.drops)
	slices.Sort(d)
	return d[len(d)/2], d[len(d)-1]
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(mathrand.Int64N(int64(d/2)))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
