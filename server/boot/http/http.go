// Package http serves sealroot's boot scripts and boot artifacts to iPXE.
//
// Two routes:
//
//	GET/HEAD /boot.ipxe?arch=bios|efi-x64  the iPXE script from a ScriptFunc
//	GET/HEAD /artifacts/<name>             a file from the artifact directory
//
// Artifacts are served with http.ServeContent (Range, If-Range,
// If-None-Match, the sendfile path) and a strong ETag: the SHA-256 of the
// file, computed once per file version and cached by (name, size, mtime).
// Only plain names ([A-Za-z0-9._-], see ipxe.CheckName) are accepted, and
// files are opened with os.OpenInRoot, so neither "..", encoded dots,
// absolute paths nor symlinks can leave the directory.
//
// Nothing served here is secret: scripts and artifacts are public, and
// integrity comes from measured boot and attestation, not from this server.
//
// # Wiring
//
//	ln, err := net.Listen("tcp", "192.0.2.1:8080")
//	...
//	scripts := func(ctx context.Context, r http.ScriptRequest) ([]byte, error) {
//		return ipxe.Render(ipxe.Params{
//			BaseURL: "http://192.0.2.1:8080/artifacts", Arch: r.Arch,
//			UKI: "sealroot.efi", Cmdline: "console=ttyS0",
//		})
//	}
//	h := http.NewHandler("/var/lib/sealroot/artifacts", scripts, logger)
//	err = http.Serve(ctx, ln, h, logger) // returns after graceful shutdown
package http

import (
	"context"
	"errors"
	"fmt"
	"net"
	nethttp "net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/ipxe"
	"github.com/sealroot/sealroot/server/boot/pace"
)

// ScriptRequest is what the handler knows about a script request.
type ScriptRequest struct {
	Arch   ipxe.Arch      // validated architecture from ?arch=
	Remote netip.AddrPort // client address; informational only, spoofable
	// RetryPause is how long the script should pause before retrying a
	// download the server refused as busy (iPXE cannot read Retry-After):
	// the server's pace when ServeWith admits downloads, else 0.
	RetryPause time.Duration
}

// ScriptFunc renders the iPXE script for a request. It must not block for
// long: firmware retries (and boot-loops) on slow answers.
type ScriptFunc func(ctx context.Context, r ScriptRequest) ([]byte, error)

// Route paths.
const (
	ScriptPath     = "/boot.ipxe"
	ArtifactPrefix = "/artifacts/"
)

// ShutdownTimeout bounds how long Serve waits for in-flight downloads.
const ShutdownTimeout = 10 * time.Second

// handler implements the routes. It has no mutable state besides the ETag
// cache, which is safe for concurrent use.
type handler struct {
	dir     string
	scripts ScriptFunc
	logger  hclog.Logger
	etags   *etagCache
	rate    int64 // bytes per second per download; 0: no cap
	clock   pace.Clock
}

// An Option configures NewHandler.
type Option func(*handler)

// WithRateCap paces each artifact download to bytesPerSecond (0: no
// cap) on clock (nil: the system clock), for NICs that hang at line rate.
// Scripts are not paced.
func WithRateCap(bytesPerSecond int64, clock pace.Clock) Option {
	return func(h *handler) {
		h.rate, h.clock = bytesPerSecond, clock
		if clock == nil {
			h.clock = pace.SystemClock{}
		}
	}
}

// NewHandler returns the boot HTTP handler serving artifacts from dir and
// scripts from scripts. A nil logger discards logs. The handler is safe for
// concurrent use.
func NewHandler(dir string, scripts ScriptFunc, logger hclog.Logger, opts ...Option) nethttp.Handler {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	h := &handler{dir: dir, scripts: scripts, logger: logger.Named("boothttp"), etags: newETagCache()}
	for _, o := range opts {
		o(h)
	}
	return h
}

func (h *handler) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	start := time.Now()
	lw := &logWriter{ResponseWriter: w}
	h.route(lw, r)
	// Served artifacts are worth a line; refusals and misses are anyone's
	// noise on the boot network and stay at debug level.
	level := hclog.Info
	if lw.statusCode() >= 400 {
		level = hclog.Debug
	}
	h.logger.Log(level, "request", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"status", lw.statusCode(), "bytes", lw.n, "duration", time.Since(start))
}

func (h *handler) route(w nethttp.ResponseWriter, r *nethttp.Request) {
	if r.Method != nethttp.MethodGet && r.Method != nethttp.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		nethttp.Error(w, "method not allowed", nethttp.StatusMethodNotAllowed)
		return
	}
	switch p := r.URL.Path; {
	case p == ScriptPath:
		h.serveScript(w, r)
	case strings.HasPrefix(p, ArtifactPrefix):
		h.serveArtifact(w, r, strings.TrimPrefix(p, ArtifactPrefix))
	default:
		nethttp.NotFound(w, r)
	}
}

func (h *handler) serveScript(w nethttp.ResponseWriter, r *nethttp.Request) {
	arch, err := ipxe.ParseArch(r.URL.Query().Get("arch"))
	if err != nil {
		nethttp.Error(w, "unsupported arch", nethttp.StatusBadRequest)
		return
	}
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	script, err := h.scripts(r.Context(), ScriptRequest{Arch: arch, Remote: remote, RetryPause: retryPause(r.Context())})
	if err != nil {
		h.logger.Error("rendering script failed", "remote", r.RemoteAddr, "arch", arch, "error", err)
		nethttp.Error(w, "script unavailable", nethttp.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", fmt.Sprint(len(script)))
	if r.Method == nethttp.MethodHead {
		return
	}
	w.Write(script)
}

// Serve runs an HTTP server with h on ln until ctx is done, with the
// default Limits. See ServeWith.
func Serve(ctx context.Context, ln net.Listener, h nethttp.Handler, logger hclog.Logger) error {
	return ServeWith(ctx, ln, h, logger, Limits{})
}

// ServeWith runs an HTTP server with h on ln until ctx is done, then shuts
// it down gracefully, waiting up to ShutdownTimeout for in-flight requests.
// Connections beyond a source's limit are closed at accept and responses
// that stall are cut (see Limits); both are counted and summarised in the
// log at most once a minute, never logged one by one. Downloads beyond
// Limits.Downloads are answered 503 with a Retry-After (see
// downloadGate), except a download that follows one its client just
// completed (see FollowedBy). It closes ln. It returns nil after a
// shutdown caused by ctx.
func ServeWith(ctx context.Context, ln net.Listener, h nethttp.Handler, logger hclog.Logger, limits Limits, opts ...ServeOption) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.Named("boothttp")
	gl := newGuardListener(ln, limits)
	gate := newDownloadGate(h, gl.limits.Downloads, opts...)
	gate.wait = max(0, gl.limits.DownloadWait)
	gl.busy = &gate.busy
	srv := &nethttp.Server{
		Handler:           gate,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(gl) }()
	summary := time.NewTicker(time.Minute)
	defer summary.Stop()
	var last Counts
	for done := false; !done; {
		select {
		case err := <-errc:
			return fmt.Errorf("http.Serve: %w", err)
		case <-summary.C:
			last = logCounts(logger, gl.counts(), last)
		case <-ctx.Done():
			done = true
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, nethttp.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	logCounts(logger, gl.counts(), last)
	if err != nil {
		return fmt.Errorf("http.Server.Shutdown: %w", err)
	}
	return nil
}

// logCounts logs what the guard did since last, if anything, and returns
// now.
func logCounts(logger hclog.Logger, now, last Counts) Counts {
	if now != last {
		logger.Warn("connections refused or cut", "refused", now.Refused-last.Refused,
			"stalled", now.Stalled-last.Stalled, "busy", now.Busy-last.Busy)
	}
	return now
}
