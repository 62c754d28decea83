package http

import (
	"context"
	nethttp "net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sealroot/sealroot/server/admission"
)

// downloadGate admits artifact downloads (GET under ArtifactPrefix) up to
// Limits.Downloads at once and answers the others 503 Service Unavailable
// with a Retry-After booked by an admission.Pacer. Scripts and HEAD
// requests pass: they are small, and a script carries the pause its
// client should take after a refused download (see ScriptRequest).
type downloadGate struct {
	next  nethttp.Handler
	slots chan struct{}
	pacer *admission.Pacer
	busy  atomic.Uint64 // downloads refused with 503
}

func newDownloadGate(next nethttp.Handler, downloads int) *downloadGate {
	return &downloadGate{next: next, slots: make(chan struct{}, downloads), pacer: admission.New(downloads, nil)}
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
	select {
	case g.slots <- struct{}{}:
	default:
		g.busy.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(g.pacer.RetryAfter())))
		nethttp.Error(w, "server busy: retry later", nethttp.StatusServiceUnavailable)
		return
	}
	start := time.Now()
	defer func() {
		g.pacer.Done(time.Since(start))
		<-g.slots
	}()
	g.next.ServeHTTP(w, r)
}

// pause is what a script should wait after a refused download: when
// every slot is taken, a return time booked for its client (an iPXE
// script loops on its own pause without fetching the script again, so
// each machine keeps its own place); when at least half are taken (a
// storm filling up: the download may be refused a moment later), how
// long a download holds a slot, the time one frees, rather than the
// script's 5 s default; else 0, the default.
func (g *downloadGate) pause() time.Duration {
	switch taken := len(g.slots); {
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
