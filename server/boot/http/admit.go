package http

import (
	"context"
	nethttp "net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealroot/sealroot/server/admission"
)

// GrantTTL is how long a client whose download of an artifact completed
// keeps the download slot for the artifact that follows it (see
// FollowedBy). iPXE asks for the initrd the moment the kernel is in, so
// this only has to cover a slow client; a grant nobody uses frees its
// slot after it.
const GrantTTL = 5 * time.Second

// A ServeOption configures ServeWith.
type ServeOption func(*downloadGate)

// FollowedBy tells ServeWith that a boot fetches artifact next right after
// artifact first (a kernel, then its initrd). A client whose download of
// first completed keeps its download slot for up to GrantTTL, and its
// download of next from the same address takes that slot rather than
// being refused: a boot admitted for its kernel is not sent back to fetch
// the kernel again because its initrd found the slots taken. A grant
// holds a slot, so grants never let more than Limits.Downloads run or
// wait; it is used once, by its address (no secret: the address of a
// client on the boot network), for next only.
func FollowedBy(first, next string) ServeOption {
	return func(g *downloadGate) { g.followUps[ArtifactPrefix+first] = ArtifactPrefix + next }
}

// downloadGate admits artifact downloads (GET under ArtifactPrefix) up to
// Limits.Downloads at once. A download that finds every slot taken waits
// for one for up to wait, in the order such downloads arrived (a
// channel's blocked senders are served first come, first served), at
// most waitingPerDownload per slot; past that it is answered 503 Service
// Unavailable with a Retry-After booked by an admission.Pacer. Scripts
// and HEAD requests pass: they are small, and a script carries the pause
// its client should take after a refused download (see ScriptRequest).
type downloadGate struct {
	next      nethttp.Handler
	slots     chan struct{}
	pacer     *admission.Pacer
	wait      time.Duration     // how long a download may wait for a slot; 0: none waits
	waiting   atomic.Int64      // downloads waiting for a slot
	busy      atomic.Uint64     // downloads refused with 503
	followUps map[string]string // path -> path a client fetches next (FollowedBy)
	now       func() time.Time

	mu     sync.Mutex
	grants map[netip.Addr]grant // guarded by mu; each holds one of slots
}

// grant is a slot kept for one client's next download.
type grant struct {
	path    string
	expires time.Time
}

func newDownloadGate(next nethttp.Handler, downloads int, opts ...ServeOption) *downloadGate {
	g := &downloadGate{next: next, slots: make(chan struct{}, downloads), pacer: admission.New(downloads, nil),
		followUps: make(map[string]string), now: time.Now, grants: make(map[netip.Addr]grant)}
	for _, o := range opts {
		o(g)
	}
	return g
}

func (g *downloadGate) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	if r.URL.Path == ScriptPath {
		g.next.ServeHTTP(w, r.WithContext(withRetryPause(r.Context(), g.pause())))
		return
	}
	if r.Method != nethttp.MethodGet || !strings.HasPrefix(r.URL.Path, ArtifactPrefix) {
		g.next.ServeHTTP(w, r)
		return
	}
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap()
	}
	if !g.useGrant(client, r.URL.Path) && !g.admit() && !g.waitForSlot(r.Context()) {
		g.busy.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(g.pacer.RetryAfter())))
		nethttp.Error(w, "server busy: retry later", nethttp.StatusServiceUnavailable)
		return
	}
	start := time.Now()
	kept := false
	defer func() {
		if !kept {
			<-g.slots
		}
	}()
	lw := &logWriter{ResponseWriter: w}
	g.next.ServeHTTP(lw, r)
	g.pacer.Done(time.Since(start))
	if next, ok := g.followUps[r.URL.Path]; ok && client.IsValid() && completed(lw) {
		g.keep(client, next)
		kept = true
	}
}

// admit takes a free slot, first reclaiming those of expired grants if
// none is free. It reports whether it took one.
func (g *downloadGate) admit() bool {
	return g.take() || (g.reclaim() > 0 && g.take())
}

// waitForSlot waits up to g.wait for a slot, behind the downloads that
// began waiting before it, unless the line is full. It reports whether it
// took one. Grants that expire meanwhile give their slots back.
func (g *downloadGate) waitForSlot(ctx context.Context) bool {
	if g.wait <= 0 {
		return false
	}
	if g.waiting.Add(1) > int64(waitingPerDownload*cap(g.slots)) {
		g.waiting.Add(-1)
		return false
	}
	defer g.waiting.Add(-1)
	ctx, cancel := context.WithTimeout(ctx, g.wait)
	defer cancel()
	for {
		took, expired := g.waitUntilExpiry(ctx)
		if !expired {
			return took
		}
		g.reclaim()
	}
}

// waitUntilExpiry waits for a slot until ctx ends or the first grant
// expires (expired).
func (g *downloadGate) waitUntilExpiry(ctx context.Context) (took, expired bool) {
	var expiry <-chan time.Time
	if d, ok := g.nextExpiry(); ok {
		t := time.NewTimer(d)
		defer t.Stop()
		expiry = t.C
	}
	select {
	case g.slots <- struct{}{}:
		return true, false
	case <-expiry:
		return false, true
	case <-ctx.Done():
		return false, false
	}
}

// nextExpiry is the time until the first grant expires, if any.
func (g *downloadGate) nextExpiry() (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var first time.Time
	for _, gr := range g.grants {
		if first.IsZero() || gr.expires.Before(first) {
			first = gr.expires
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return max(first.Sub(g.now())+time.Millisecond, time.Millisecond), true
}

// take takes a free slot if there is one.
func (g *downloadGate) take() bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// keep hands the slot of a finished download to client's grant for path.
// A client keeps one grant: an older one frees its slot.
func (g *downloadGate) keep(client netip.Addr, path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.grants[client]; ok {
		<-g.slots
	}
	g.grants[client] = grant{path: path, expires: g.now().Add(GrantTTL)}
}

// useGrant reports whether client holds an unexpired grant for path, and
// consumes it: its slot is now the caller's.
func (g *downloadGate) useGrant(client netip.Addr, path string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, ok := g.grants[client]
	if !ok || gr.path != path {
		return false
	}
	delete(g.grants, client)
	if g.now().After(gr.expires) {
		<-g.slots
		return false
	}
	return true
}

// reclaim frees the slots of expired grants and returns how many.
func (g *downloadGate) reclaim() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	now, n := g.now(), 0
	for c, gr := range g.grants {
		if now.After(gr.expires) {
			delete(g.grants, c)
			<-g.slots
			n++
		}
	}
	return n
}

// completed reports whether the whole artifact went out: 200 with as
// many bytes written as its Content-Length. (Not whether the client is
// still connected: one that closes as soon as it has the file, as iPXE
// may, has what the grant is for.)
func completed(lw *logWriter) bool {
	return lw.status == nethttp.StatusOK && lw.Header().Get("Content-Length") == strconv.FormatInt(lw.n, 10)
}

// pause is what a script should wait after a refused download: when
// every slot is taken, a return time booked for its client (an iPXE
// script loops on its own pause without fetching the script again, so
// each machine keeps its own place); when at least half are taken (a
// storm filling up: the download may be refused a moment later), how
// long a download holds a slot, the time one frees, rather than the
// script's 5 s default; else 0, the default.
func (g *downloadGate) pause() time.Duration {
	taken := len(g.slots)
	if taken >= cap(g.slots) {
		taken -= g.reclaim()
	}
	switch {
	case taken >= cap(g.slots):
		return g.pacer.RetryAfter()
	case 2*taken >= cap(g.slots):
		return max(g.pacer.Hold(), admission.MinRetryAfter)
	}
	return 0
}

// retryAfterSeconds is d as a Retry-After value (RFC 9110, section
// 10.2.3): whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

type retryPauseKey struct{}

func withRetryPause(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, retryPauseKey{}, d)
}

// retryPause is the pause withRetryPause put in ctx, or 0.
func retryPause(ctx context.Context) time.Duration {
	d, _ := ctx.Value(retryPauseKey{}).(time.Duration)
	return d
}
